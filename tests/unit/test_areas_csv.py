"""The areas file a programme supplies: headers, the mess real files contain, and every bad row with its line."""
from __future__ import annotations

from pathlib import Path

import pytest

from stats.areas import AreaRejectCode, AreasFileError, parse_areas, read_areas
from timecredits.demo import BOROUGHS

SAMPLE = Path(__file__).resolve().parents[2] / "stats" / "samples" / "areas-london-sample.csv"
HEADER = "code,name,need_decile,population,source"


def areas(*lines: str, header: str = HEADER, newline: str = "\n"):
    return parse_areas((newline.join([header, *lines]) + newline).encode("utf-8"))


def test_the_sample_holds_the_demo_boroughs_and_says_it_is_synthetic() -> None:
    parsed = read_areas(SAMPLE)
    assert parsed.ok
    assert {a.code: a.name for a in parsed.areas} == BOROUGHS
    for area in parsed.areas:
        assert 1 <= area.need_decile <= 10
        assert area.population > 0 and area.population % 10_000 == 0, "round, made-up figures"
        assert area.source == "synthetic sample for the demo, not official figures"


def test_a_good_file_gives_typed_areas_with_their_line_numbers() -> None:
    parsed = areas("E09000030,Tower Hamlets,1,310000,\"IMD 2019, synthetic\"", "W06000015,Cardiff,6,360000,")
    assert parsed.ok
    first, second = parsed.areas
    assert (first.line, first.code, first.name, first.need_decile, first.population, first.source) == \
        (2, "E09000030", "Tower Hamlets", 1, 310000, "IMD 2019, synthetic")
    assert (second.line, second.code, second.source) == (3, "W06000015", "")


def test_headers_ignore_case_spaces_and_underscores_and_a_bom_and_blank_rows_and_crlf() -> None:
    data = ("\ufeff Code ,  NAME , Need Decile ,Population,Notes\r\n"
            "\r\n"
            "e05009317 , Spitalfields and Banglatown , 2 ,\"12,000\", ward\r\n"
            ",,,,\r\n"
            "S12000036,Edinburgh,9,520000,\r\n").encode("utf-8")
    parsed = parse_areas(data)
    assert parsed.ok, parsed.rejected
    assert [(a.line, a.code, a.name, a.population, a.source) for a in parsed.areas] == [
        (3, "E05009317", "Spitalfields and Banglatown", 12000, ""),  # no source column: the notes are not it
        (5, "S12000036", "Edinburgh", 520000, ""),
    ]


def test_a_bom_before_the_first_heading_is_not_part_of_it() -> None:
    parsed = parse_areas(b"\xef\xbb\xbfcode,name,need_decile,population\nE09000012,Hackney,2,260000\n")
    assert parsed.ok and parsed.areas[0].code == "E09000012"


def test_a_windows_1252_file_keeps_its_accents() -> None:
    parsed = parse_areas("code,name,need_decile,population\nE05000001,Caf\xe9 Quarter,3,9000\n".encode("cp1252"))
    assert parsed.encoding == "cp1252" and parsed.areas[0].name == "Caf\u00e9 Quarter"


@pytest.mark.parametrize("code", ["E0900003", "E090000300", "X09000030", "E09O00030", "09000030", "E 09000030"])
def test_a_bad_code_is_rejected_with_its_line(code: str) -> None:
    parsed = areas("E09000012,Hackney,2,260000,", f"{code},Somewhere,3,1000,")
    assert [a.code for a in parsed.areas] == ["E09000012"]
    (bad,) = parsed.rejected
    assert (bad.line, bad.reason) == (3, AreaRejectCode.BAD_CODE)
    assert "ONS area code" in bad.message


@pytest.mark.parametrize("decile", ["0", "11", "2.5", "-1", "two", "1O", "²"])
def test_a_decile_outside_1_to_10_or_not_whole_is_rejected(decile: str) -> None:
    parsed = areas(f"E09000012,Hackney,{decile},260000,")
    (bad,) = parsed.rejected
    assert (bad.line, bad.reason) == (2, AreaRejectCode.BAD_DECILE)
    assert "1 (the most deprived 10 %) to 10" in bad.message


@pytest.mark.parametrize("population", ["0", "-5", "abc", "260000.5", "2.6e5", "\"26,00,00\"", "100000001"])
def test_a_population_that_is_not_a_positive_whole_number_is_rejected(population: str) -> None:
    parsed = areas(f"E09000012,Hackney,2,{population},")
    (bad,) = parsed.rejected
    assert (bad.line, bad.reason) == (2, AreaRejectCode.BAD_POPULATION)


def test_every_bad_row_is_reported_with_the_spreadsheet_line_not_only_the_first() -> None:
    parsed = areas(
        "E09000030,Tower Hamlets,1,310000,ok",  # line 2
        "",  # line 3: blank, skipped but counted
        "E0900001,City,5,8600,",  # line 4
        "E09000012,Hackney,0,260000,",  # line 5
        "E09000025,Newham,1,0,",  # line 6
        "E09000022,,3,320000,",  # line 7
        "E09000030,Tower Hamlets again,1,310000,",  # line 8: duplicate
        "E09000028,Southwark,3,310000,x,unexpected",  # line 9: misaligned (an unquoted comma)
    )
    assert [a.code for a in parsed.areas] == ["E09000030"]
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (4, AreaRejectCode.BAD_CODE),
        (5, AreaRejectCode.BAD_DECILE),
        (6, AreaRejectCode.BAD_POPULATION),
        (7, AreaRejectCode.MISSING_VALUE),
        (8, AreaRejectCode.DUPLICATE_CODE),
        (9, AreaRejectCode.INVALID_ROW),
    ]
    assert "also on line 2" in parsed.rejected[4].message
    assert str(parsed.rejected[0]).startswith("line 4: ")
    assert parsed.rejected[3].raw == ("E09000022", "", "3", "320000", "")


def test_a_quoted_population_with_thousands_separators_is_read() -> None:
    assert areas('E09000030,Tower Hamlets,1,"310,000",').areas[0].population == 310_000


@pytest.mark.parametrize("missing", ["code", "name", "need_decile", "population"])
def test_a_missing_column_makes_the_whole_file_unusable(missing: str) -> None:
    header = ",".join(h for h in HEADER.split(",") if h != missing)
    with pytest.raises(AreasFileError, match=f"missing column\\(s\\) {missing}"):
        areas("E09000030,Tower Hamlets,1,310000", header=header)


def test_the_source_column_is_optional() -> None:
    parsed = areas("E09000030,Tower Hamlets,1,310000", header="code,name,need_decile,population")
    assert parsed.ok and parsed.areas[0].source == ""


def test_two_columns_for_one_field_are_refused() -> None:
    with pytest.raises(AreasFileError, match="both give the need_decile"):
        areas("E09000030,Tower Hamlets,1,1,310000", header="code,name,need decile,IMD decile,population")


@pytest.mark.parametrize("data", [b"", b"\n\n", b"code,name,need_decile,population\n"])
def test_an_empty_file_or_one_without_areas_is_unusable(data: bytes) -> None:
    with pytest.raises(AreasFileError):
        parse_areas(data)


def test_a_name_with_a_line_break_or_far_too_long_is_rejected() -> None:
    parsed = areas('E09000030,"Tower\nHamlets",1,310000,', f"E09000012,{'x' * 201},2,260000,")
    assert [(r.line, r.reason) for r in parsed.rejected] == [(2, AreaRejectCode.BAD_NAME),
                                                              (3, AreaRejectCode.BAD_NAME)]
