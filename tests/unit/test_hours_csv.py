"""The monthly hours spreadsheet: formats, the mess real sheets contain, line numbers and deterministic ids."""
from __future__ import annotations

import csv
import os
import io
import random
from datetime import date
from pathlib import Path
from uuid import UUID, uuid5

import pytest

from ledger.events import HoursApproved, HoursLogged
from producers.hours_csv import (
    NAMESPACE,
    TOTALS_ROW,
    RejectCode,
    SheetError,
    approval_event_id,
    log_event_id,
    parse_duration,
    parse_sheet,
    parse_uk_date,
    read_sheet,
)
from producers.import_hours import write_report

TODAY = date(2026, 11, 21)
ORG = "org-hackney-foodbank"
HEADER = "volunteer,date,hours,activity"
SAMPLE = Path(__file__).resolve().parents[2] / "producers" / "samples" / "hours-2026-10.csv"


def sheet(*lines: str, header: str = HEADER, newline: str = "\n", org: str = ORG):
    return parse_sheet((newline.join([header, *lines]) + newline).encode("utf-8"), org, today=TODAY)


# --- cells ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "02/11/2026",
        "2/11/2026",
        "02/11/26",
        "2/11/26",
        "02-11-2026",
        "02.11.2026",
        "2026-11-02",
        "2 Nov 2026",
        "2 November 2026",
        "2 NOVEMBER 2026",
        "2nd Nov 2026",
        "02-Nov-2026",
        " 02/11/2026 ",
        "02/11/2026 00:00",
        "02/11/2026 00:00:00",
    ],
)
def test_uk_date_formats_are_day_first(text: str) -> None:
    assert parse_uk_date(text, today=TODAY) == date(2026, 11, 2)


def test_september_abbreviations() -> None:
    assert parse_uk_date("1 Sept 2026") == parse_uk_date("1 Sep 2026") == date(2026, 9, 1)


@pytest.mark.parametrize(
    "text",
    ["31/02/2026", "29/02/2026", "31/09/2026", "00/10/2026", "13/13/2026", "11/25/2026", "2 Novembre 2026",
     "2026/11/02", "02/11", "yesterday", "02/11-2026", "45291", "2 Foo 2026"],
)
def test_impossible_or_unreadable_dates_are_bad_dates(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_uk_date(text, today=TODAY)
    assert caught.value.code == RejectCode.BAD_DATE  # type: ignore[attr-defined]


def test_american_order_gets_a_day_first_hint() -> None:
    with pytest.raises(ValueError, match="day first"):
        parse_uk_date("11/25/2026", today=TODAY)


def test_leap_day_exists_in_a_leap_year() -> None:
    assert parse_uk_date("29/02/2024", today=TODAY) == date(2024, 2, 29)


def test_future_dates_are_refused_today_is_not() -> None:
    assert parse_uk_date("21/11/2026", today=TODAY) == TODAY
    with pytest.raises(ValueError) as caught:
        parse_uk_date("22/11/2026", today=TODAY)
    assert caught.value.code == RejectCode.FUTURE_DATE  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("1.5", 90),
        ("1", 60),
        ("1.0", 60),
        ("0.25", 15),
        (".5", 30),
        ("2.75", 165),
        ("24", 1440),
        ("1:30", 90),
        ("0:45", 45),
        ("10:05", 605),
        ("1:30:00", 90),
        ("2h", 120),
        ("2 h", 120),
        ("2hrs", 120),
        ("1.5 hours", 90),
        ("1h30", 90),
        ("1h 30m", 90),
        ("90m", 90),
        ("90 mins", 90),
        ("45 minutes", 45),
        (" 1.5 ", 90),
    ],
)
def test_hours_formats_become_whole_minutes(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1,5", "decimal point"),
        ("0.01", "not a whole number of minutes"),
        ("1.33", "not a whole number of minutes"),
        ("1:30:30", "not a whole number of minutes"),
        ("0", "more than zero"),
        ("0:00", "more than zero"),
        ("0m", "more than zero"),
        ("-1", "negative"),
        ("24.5", "more than 24 hours"),
        ("25:00", "more than 24 hours"),
        ("1441m", "more than 24 hours"),
        ("1:75", "not a number of hours"),
        ("two", "not a number of hours"),
        ("1.5.2", "not a number of hours"),
        ("nan", "not a number of hours"),
        ("1e2", "not a number of hours"),
    ],
)
def test_bad_hours_are_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as caught:
        parse_duration(text)
    assert caught.value.code == RejectCode.BAD_HOURS  # type: ignore[attr-defined]


# --- the file -------------------------------------------------------------------------------


def test_a_clean_sheet_becomes_hours_logged_events() -> None:
    parsed = sheet("V0001,02/11/2026,1.5,Food bank shift", "V0002,3 Nov 2026,1:30,Litter pick")
    assert parsed.rejected == [] and parsed.skipped == []
    assert [row.line for row in parsed.rows] == [2, 3]
    assert parsed.rows[0].hours == HoursLogged(
        volunteer_id="V0001", org_id=ORG, date=date(2026, 11, 2), minutes=90, activity="Food bank shift"
    )
    assert parsed.rows[1].hours.date == date(2026, 11, 3)


def test_header_is_case_insensitive_with_aliases_and_extra_columns() -> None:
    parsed = sheet(
        "Ann,V0001,2/11/2026,ok,2,Gardening",
        header="First name, Volunteer No. ,DATE,Checked,  Time ,Description",
    )
    assert parsed.rejected == []
    (row,) = parsed.rows
    assert (row.hours.volunteer_id, row.hours.minutes, row.hours.activity) == ("V0001", 120, "Gardening")


@pytest.mark.parametrize("heading", ["volunteer", "Volunteer_ID", "volunteer id", "Volunteer Number", "VOLUNTEER NO"])
def test_volunteer_column_aliases(heading: str) -> None:
    parsed = sheet("V7,2/11/2026,1,x", header=f"{heading},date,hours,activity")
    assert parsed.rows[0].hours.volunteer_id == "V7"


def test_a_missing_column_makes_the_whole_file_unusable() -> None:
    with pytest.raises(SheetError, match="missing column.*hours"):
        sheet("V1,2/11/2026,Gardening", header="volunteer,date,activity")


def test_two_columns_for_one_field_are_refused() -> None:
    with pytest.raises(SheetError, match="both give the hours"):
        sheet("V1,2/11/2026,1,1,x", header="volunteer,date,hours,time,activity")


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(SheetError, match="empty"):
        parse_sheet(b"", ORG, today=TODAY)
    with pytest.raises(SheetError, match="empty"):
        parse_sheet(b"\xef\xbb\xbf\r\n,,,\r\n", ORG, today=TODAY)


def test_byte_order_mark_and_windows_line_endings() -> None:
    data = ("\ufeff" + HEADER + "\r\nV1,02/11/2026,1.5,Food bank\r\nV2,02/11/2026,1,Library\r\n").encode("utf-8")
    parsed = parse_sheet(data, ORG, today=TODAY)
    assert parsed.encoding == "utf-8"
    assert [(row.line, row.hours.volunteer_id, row.hours.activity) for row in parsed.rows] == [
        (2, "V1", "Food bank"),
        (3, "V2", "Library"),
    ]


def test_windows_1252_export_falls_back_from_utf8() -> None:
    data = (HEADER + "\r\nV1,02/11/2026,1,Café – crèche £5 rota\r\n").encode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    parsed = parse_sheet(data, ORG, today=TODAY)
    assert parsed.encoding == "cp1252"
    assert parsed.rows[0].hours.activity == "Café – crèche £5 rota"


def test_utf8_text_is_read_as_utf8() -> None:
    parsed = parse_sheet((HEADER + "\nV1,02/11/2026,1,Café\n").encode("utf-8"), ORG, today=TODAY)
    assert parsed.rows[0].hours.activity == "Café"


def test_blank_rows_are_skipped_silently_and_totals_rows_are_reported() -> None:
    parsed = sheet(
        "V1,02/11/2026,1.5,Food bank",
        "",
        ",,,",
        "  ,  ,,",
        "V2,02/11/2026,1,Library",
        "Total,,2.5,",
        ",TOTAL hours,2.5,",
        "Totals:,,,",
        "Grand total,,2.5,",
    )
    assert [row.line for row in parsed.rows] == [2, 6]
    assert parsed.rejected == []
    assert [(row.line, row.reason) for row in parsed.skipped] == [
        (7, TOTALS_ROW), (8, TOTALS_ROW), (9, TOTALS_ROW), (10, TOTALS_ROW)
    ]


def test_leading_blank_rows_before_the_header_are_tolerated() -> None:
    parsed = parse_sheet(("\n,,,\n" + HEADER + "\nV1,02/11/2026,1,x\n").encode(), ORG, today=TODAY)
    assert [row.line for row in parsed.rows] == [4]


def test_invalid_rows_are_rejected_with_spreadsheet_line_numbers() -> None:
    parsed = sheet(
        "V1,02/11/2026,1.5,Food bank",  # 2 good
        "V2,31/02/2026,1,Library",  # 3 bad date
        "",  # 4 blank
        "V3,01/12/2026,1,Library",  # 5 future
        "V4,02/11/2026,1.33,Library",  # 6 bad hours
        "Ann Smith,02/11/2026,1,Library",  # 7 not a volunteer id
        "V5,,1,Library",  # 8 missing date
        "V6,02/11/2026,,",  # 9 missing hours and activity
        "V7,02/11/2026,1," + "x" * 201,  # 10 activity too long
        "V8,02/11/2026,1,bad \x01 char",  # 11 unstorable character
        '"V9",02/11/2026,1,"Befriending, weekly"',  # 12 good: quoted comma
        "V10,02/11/2026,1,5,Library",  # 13 unquoted decimal comma shifts the columns
        '"V11",02/11/2026,1,"two\nlines"',  # 14 good: one spreadsheet row over two physical lines
        "V12,02/11/2026,2,Library",  # 15 good
    )
    assert [(row.line, row.hours.volunteer_id) for row in parsed.rows] == [(2, "V1"), (12, "V9"), (14, "V11"),
                                                                          (15, "V12")]
    assert [(row.line, row.reason) for row in parsed.rejected] == [
        (3, RejectCode.BAD_DATE),
        (5, RejectCode.FUTURE_DATE),
        (6, RejectCode.BAD_HOURS),
        (7, RejectCode.INVALID_VOLUNTEER),
        (8, RejectCode.MISSING_VALUE),
        (9, RejectCode.MISSING_VALUE),
        (10, RejectCode.INVALID_ACTIVITY),
        (11, RejectCode.INVALID_ACTIVITY),
        (13, RejectCode.INVALID_ROW),
    ]
    messages = {row.line: row.message for row in parsed.rejected}
    assert "no hours, no activity" in messages[9]
    assert "at most 200" in messages[10]
    assert "in quotes" in messages[13]
    assert parsed.rejected[0].raw == ("V2", "31/02/2026", "1", "Library")


def test_every_good_row_validates_as_the_event_model() -> None:
    parsed = sheet("V1,02/11/2026,1,  padded activity  ", "a" * 65 + ",02/11/2026,1,x", "V1:2,02/11/2026,1,x")
    assert parsed.rows[0].hours.activity == "padded activity"
    assert [row.reason for row in parsed.rejected] == [RejectCode.INVALID_VOLUNTEER] * 2


def test_an_invalid_organisation_id_is_refused_before_reading() -> None:
    with pytest.raises(ValueError, match="organisation"):
        sheet("V1,02/11/2026,1,x", org="org:with:colons")


def test_today_defaults_to_the_real_date() -> None:
    parsed = parse_sheet(f"{HEADER}\nV1,02/11/2099,1,x\nV1,02/11/2001,1,x\n".encode(), ORG)
    assert [row.reason for row in parsed.rejected] == [RejectCode.FUTURE_DATE]
    assert len(parsed.rows) == 1


# --- ids ------------------------------------------------------------------------------------

ROWS = [
    "V1,02/11/2026,1.5,Food bank",
    "V2,03/11/2026,1,Library",
    "V1,04/11/2026,2,Food bank",
    "V3,05/11/2026,0:45,Garden",
    "V2,03/11/2026,1,Library",  # a second, identical session
    "V4,06/11/2026,3,Coaching",
]


def test_the_id_formula_is_the_documented_one() -> None:
    parsed = sheet("V1,02/11/2026,1:30,Food bank")
    expected = log_event_id(ORG, "V1", date(2026, 11, 2), 90, "Food bank", 0)
    assert parsed.rows[0].event_id == expected
    assert expected == uuid5(NAMESPACE, f"{ORG}|V1|2026-11-02|90|Food bank|0")
    assert NAMESPACE == UUID("4cc2a576-2c1b-585c-96bd-66bd726d8241")


def test_same_file_twice_gives_the_same_ids() -> None:
    first, second = sheet(*ROWS), sheet(*ROWS)
    assert [row.event_id for row in first.rows] == [row.event_id for row in second.rows]
    assert len({row.event_id for row in first.rows}) == len(ROWS)


def test_a_resorted_file_gives_the_same_set_of_ids() -> None:
    shuffled = ROWS[:]
    random.Random(7).shuffle(shuffled)
    assert shuffled != ROWS
    assert {row.event_id for row in sheet(*ROWS).rows} == {row.event_id for row in sheet(*shuffled).rows}
    # blank rows, totals rows, other columns and other ways of writing the same values change nothing
    reformatted = sheet(
        ",,,,",
        *(row.replace("1.5", "1:30").replace("03/11/2026", "3 Nov 2026") + ",note" for row in ROWS),
        "Total,,9.25,,",
        header=HEADER + ",notes",
    )
    assert {row.event_id for row in reformatted.rows} == {row.event_id for row in sheet(*ROWS).rows}


def test_identical_rows_get_different_ids() -> None:
    parsed = sheet("V1,02/11/2026,1,Food bank", "V1,02/11/2026,1,Food bank", "V1,02/11/2026,1,Food bank")
    assert len({row.event_id for row in parsed.rows}) == 3


def test_ids_depend_on_the_organisation_and_on_every_value() -> None:
    base = sheet("V1,02/11/2026,1,Food bank").rows[0].event_id
    assert sheet("V1,02/11/2026,1,Food bank", org="another-org").rows[0].event_id != base
    for variant in ("V2,02/11/2026,1,Food bank", "V1,03/11/2026,1,Food bank", "V1,02/11/2026,2,Food bank",
                    "V1,02/11/2026,1,Food Bank"):
        assert sheet(variant).rows[0].event_id != base


def test_approval_follows_each_log_with_a_derived_id() -> None:
    parsed = sheet("V1,02/11/2026,1,Food bank", "V2,02/11/2026,1,Library")
    assert [type(p) for _, p in parsed.events(approve=False)] == [HoursLogged, HoursLogged]
    events = parsed.events(approve=True)
    assert [type(p) for _, p in events] == [HoursLogged, HoursApproved, HoursLogged, HoursApproved]
    (log_id, _), (approval_id, approval) = events[0], events[1]
    assert approval == HoursApproved(log_event_id=log_id, volunteer_id="V1", org_id=ORG)
    assert approval_id == approval_event_id(log_id) != log_id
    assert [event_id for event_id, _ in sheet("V1,02/11/2026,1,Food bank", "V2,02/11/2026,1,Library").events(
        approve=True)] == [event_id for event_id, _ in events]


# --- the sample and the report --------------------------------------------------------------


def test_the_shipped_sample_sheet() -> None:
    raw = SAMPLE.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    parsed = read_sheet(SAMPLE, "org-example", today=TODAY)
    assert len(parsed.rows) == 8
    assert [(row.line, row.reason) for row in parsed.rejected] == [(10, RejectCode.BAD_DATE)]
    assert [(row.line, row.reason) for row in parsed.skipped] == [(12, TOTALS_ROW)]
    assert sum(row.hours.minutes for row in parsed.rows) == 13 * 60 + 15


def test_the_sample_sheet_names_members_of_the_organisation_the_readme_imports_it_for() -> None:
    """README: `import-hours producers/samples/hours-2026-10.csv --org food-bank-th` beside `up --demo`."""
    from timecredits.demo import volunteering

    demo = volunteering()
    parsed = read_sheet(SAMPLE, "food-bank-th", today=TODAY)
    named = {row.hours.volunteer_id for row in parsed.rows}
    assert named and all("food-bank-th" in demo.orgs.get(volunteer, ()) for volunteer in named), named


def test_report_lists_rejected_and_skipped_rows_by_line(tmp_path: Path) -> None:
    parsed = sheet("V1,31/02/2026,1,x", "Total,,1,", "V2,02/11/2026,1,=HYPERLINK(\"http://x\")", "V3,02/11/2026,x,y")
    report = tmp_path / "out" / "report.csv"
    write_report(parsed, report)
    rows = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8-sig"))))
    assert [(r["line"], r["reason"]) for r in rows] == [("2", "bad_date"), ("3", "totals_row"), ("5", "bad_hours")]
    assert rows[0]["raw"] == "V1,31/02/2026,1,x"
    assert parsed.rows[0].hours.activity.startswith("=")  # the good row is produced as written


def test_report_cells_cannot_become_spreadsheet_formulas(tmp_path: Path) -> None:
    parsed = sheet("=1+1,02/11/2026,1,x")
    report = tmp_path / "report.csv"
    write_report(parsed, report)
    (row,) = csv.DictReader(io.StringIO(report.read_text(encoding="utf-8-sig")))
    assert row["reason"] == "invalid_volunteer"
    assert row["raw"].startswith("'=")


def test_a_rows_volunteer_is_resolved_by_the_organisations_reference_and_an_unknown_one_is_a_row_error() -> None:
    directory = {"ASH-0042": "v-0123456789ab", "v-0123456789ab": "v-0123456789ab", "v-ba9876543210": "v-ba9876543210"}
    data = ("volunteer,date,hours,activity\r\nASH-0042,02/10/2026,1.5,Food bank\r\n"
            "v-ba9876543210,02/10/2026,1,Food bank\r\nASH-9999,02/10/2026,1,Food bank\r\n").encode()
    sheet = parse_sheet(data, "ash", today=TODAY, resolve=directory.get)
    assert [row.hours.volunteer_id for row in sheet.rows] == ["v-0123456789ab", "v-ba9876543210"]
    assert [(row.line, row.reason) for row in sheet.rejected] == [(4, RejectCode.UNKNOWN_VOLUNTEER)]
    assert "no volunteer has the reference 'ASH-9999' at ash" in sheet.rejected[0].message
    # The event id follows the volunteer, not the cell: the same work imported by id or by reference is one log.
    by_id = parse_sheet(b"volunteer,date,hours,activity\r\nv-0123456789ab,02/10/2026,1.5,Food bank\r\n", "ash",
                        today=TODAY, resolve=directory.get)
    assert by_id.rows[0].event_id == sheet.rows[0].event_id


def test_an_excel_workbook_is_read_like_its_csv() -> None:
    """The same rows from a .xlsx file as from its CSV: dates as dates, hours as numbers or text."""
    import io
    from datetime import datetime

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Volunteer", "Date", "Hours", "Activity"])
    sheet.append(["V1", datetime(2026, 11, 2), 1.5, "Food bank"])
    sheet.append(["V2", "03/11/2026", "1:30", "Library"])
    sheet.append(["V3", datetime(2026, 11, 4), 2, None])
    data = io.BytesIO()
    book.save(data)
    parsed = parse_sheet(data.getvalue(), ORG, today=date(2026, 11, 30))
    assert [(r.hours.volunteer_id, r.hours.date, r.hours.minutes) for r in parsed.rows] == [
        ("V1", date(2026, 11, 2), 90), ("V2", date(2026, 11, 3), 90)]
    assert [r.reason for r in parsed.rejected] == [RejectCode.MISSING_VALUE]
    with pytest.raises(SheetError, match="cannot be read"):
        parse_sheet(b"PK\x03\x04 not really a workbook", ORG)


def test_import_hours_help_names_the_report_path_the_code_writes_and_the_exit_codes() -> None:
    from typer.testing import CliRunner

    from producers.cli import EXIT_NOT_CHECKED, EXIT_REFUSED, default_report_path
    from timecredits.cli import app

    result = CliRunner().invoke(app, ["import-hours", "--help"], env={"COLUMNS": "300"}, terminal_width=300)
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.split())
    assert "default: FILE.report.csv next to FILE, e.g. hours-2026-10.report.csv" in help_text
    assert default_report_path(Path("/in/hours-2026-10.csv")) == Path("/in/hours-2026-10.report.csv")
    assert default_report_path(Path("/in/hours-2026-10.xlsx")) == Path("/in/hours-2026-10.report.csv")
    assert f"{EXIT_REFUSED} some rows were refused" in help_text and f"{EXIT_NOT_CHECKED} some rows" in help_text


def test_import_hours_without_a_configured_or_running_broker_says_so(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS") and not key.startswith("TIMECREDITS_")}
    result = subprocess.run([sys.executable, "-m", "timecredits.cli", "import-hours", str(SAMPLE), "--org", "x",
                             "--data-dir", str(tmp_path)], env={**env, "COLUMNS": "300"}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no `timecredits up` is running on" in result.stdout and "KAFKA_BOOTSTRAP_SERVERS" in result.stdout
