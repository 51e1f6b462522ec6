"""Areas imported from the programme's CSV, and the committee report built on the statistics, on real PostgreSQL.

The report is checked as a committee member and a statistician would: one self-contained document, headline
figures equal to the statistics, small cells shown as [c] with their true figures nowhere in sight, and the
cold spots in rank order.
"""
from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import pytest
from rich.console import Console
from sqlalchemy import Engine, select

from ledger.pg import schema
from ledger.events import (
    DecodedEvent,
    EventPayload,
    HoursLogged,
    MembershipStarted,
    VolunteerRegistered,
    decode_event,
    encode_event,
)
from tests.ledger_helpers import actor_for
from ledger.pg.processing import EventProcessor
from stats.areas import AreaRejectCode, import_areas
from stats.cli import import_areas_command, report_command
from stats.facts import write_facts
from stats.model import SUPPRESSION_THRESHOLD, Figures
from stats.numbers import hours_text
from stats.queries import cold_spots, participation
from stats.report import render_report
from timecredits import demo

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "stats" / "samples" / "areas-london-sample.csv"
Q2 = (date(2026, 4, 1), date(2026, 6, 30))
Q3 = (date(2026, 7, 1), date(2026, 9, 30))
WESTMINSTER = "E09000033"
FEW = ["w1", "w2", "w3"]  # three volunteers in Westminster: a cell that must never be shown
FEW_MINUTES = 433  # 7 h 13 min each: 21.65 hours together, a figure easy to look for


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, color_system=None), out


def _areas(engine: Engine) -> list[tuple]:
    a = schema.areas
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(a).order_by(a.c.code))]


# --- areas --------------------------------------------------------------------------------------------------


def test_the_sample_areas_import_and_importing_them_again_changes_nothing(engine: Engine) -> None:
    first = import_areas(engine, SAMPLE)
    assert (first.inserted, first.updated, first.unchanged, first.rejected) == (7, 0, 0, ())
    rows = _areas(engine)
    assert {row[0]: row[1] for row in rows} == demo.BOROUGHS
    assert all(row[4] == "synthetic sample for the demo, not official figures" for row in rows)

    again = import_areas(engine, SAMPLE)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 7)
    assert _areas(engine) == rows, "same rows, updated_at included"


def test_a_changed_area_is_updated_and_others_are_kept(engine: Engine, tmp_path: Path) -> None:
    import_areas(engine, SAMPLE)
    before = {row[0]: row for row in _areas(engine)}
    changed = tmp_path / "areas.csv"
    changed.write_text("code,name,need_decile,population,source\n"
                       "E09000030,Tower Hamlets,2,320000,IMD 2025\n"
                       "E09000033,Westminster,5,200000,IMD 2025\n", encoding="utf-8")
    result = import_areas(engine, changed)
    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 0)
    after = {row[0]: row for row in _areas(engine)}
    assert after["E09000030"][1:5] == ("Tower Hamlets", 2, 320000, "IMD 2025")
    assert after["E09000033"][1:5] == ("Westminster", 5, 200000, "IMD 2025")
    assert after["E09000012"] == before["E09000012"], "areas missing from the file are left alone"


def test_a_file_with_one_bad_row_imports_nothing_and_the_command_says_where(engine: Engine, tmp_path: Path) -> None:
    bad = tmp_path / "areas.csv"
    bad.write_text("Code,Name,Need Decile,Population\n"
                   "E09000033,Westminster,5,200000\n"
                   "E09000001,City of London,12,8600\n"
                   "E0900002,Barking,2,220000\n", encoding="utf-8")
    result = import_areas(engine, bad)
    assert [(r.line, r.reason) for r in result.rejected] == [(3, AreaRejectCode.BAD_DECILE),
                                                             (4, AreaRejectCode.BAD_CODE)]
    assert result.rows == 0 and _areas(engine) == [], "not even the good row: half an area table misleads"

    console, out = _console()
    assert import_areas_command(bad, engine, console) == 1
    printed = out.getvalue()
    assert "line 3:" in printed and "line 4:" in printed and "nothing was imported" in printed
    assert _areas(engine) == []

    no_column = tmp_path / "no-population.csv"
    no_column.write_text("code,name,need_decile\nE09000033,Westminster,5\n", encoding="utf-8")
    console, out = _console()
    assert import_areas_command(no_column, engine, console) == 2
    assert "missing column(s) population" in out.getvalue()
    assert import_areas_command(tmp_path / "absent.csv", engine, console) == 2

    console, out = _console()
    assert import_areas_command(SAMPLE, engine, console) == 0
    assert "Imported 7 area(s)" in out.getvalue() and len(_areas(engine)) == 7


# --- the report ---------------------------------------------------------------------------------------------


def _decoded(payload: EventPayload, event_id, at: datetime) -> DecodedEvent:  # type: ignore[no-untyped-def]
    decoded = decode_event(encode_event(payload, actor=actor_for(payload), event_id=event_id, occurred_at=at)[1])
    assert isinstance(decoded, DecodedEvent), decoded
    return decoded


def _apply(engine: Engine, events: list[DecodedEvent], batch: int = 500) -> None:
    processor = EventProcessor(engine)
    for start in range(0, len(events), batch):
        result = processor.process(events[start:start + batch])
        assert all(outcome.applied for outcome in result.outcomes if outcome.type == "HoursLogged")
        write_facts(engine, result.committed)


def _few_hours(day: date) -> list[DecodedEvent]:
    at = datetime(day.year, day.month, day.day, 17, tzinfo=UTC)
    return [_decoded(HoursLogged(volunteer_id=v, org_id="bike-buddies", date=day, minutes=FEW_MINUTES, category="environment"), None, at)
            for v in FEW]  # bike-buddies auto-approves; the only hours of their kind: a small cell of it too


@pytest.fixture()
def programme(engine: Engine, tmp_path: Path) -> Engine:
    """Four months of the demo programme (March to June 2026), the sample areas plus Westminster, and three
    Westminster volunteers who give hours in May and, alone, in August."""
    registered = datetime(2025, 10, 1, tzinfo=UTC)
    registry = [_decoded(e.payload, e.event_id, e.occurred_at) for e in demo.registry()]
    registry += [_decoded(VolunteerRegistered(volunteer_id=v, area=WESTMINSTER, age_band="25-34", seb="lower",
                                              consent_stats=True), None, registered) for v in FEW]
    registry += [_decoded(MembershipStarted(membership_id=uuid4(), org_id="bike-buddies", volunteer_id=v), None,
                          registered) for v in FEW]
    _apply(engine, registry)
    _apply(engine, [_decoded(e.payload, e.event_id, e.occurred_at)
                    for e in demo.activity(days=122, start=date(2026, 3, 1))])
    _apply(engine, _few_hours(date(2026, 5, 12)) + _few_hours(date(2026, 8, 4)))
    import_areas(engine, SAMPLE)
    westminster = tmp_path / "westminster.csv"
    westminster.write_text("code,name,need_decile,population,source\n"
                           f"{WESTMINSTER},Westminster,5,200000,synthetic test figure\n", encoding="utf-8")
    assert import_areas(engine, westminster).inserted == 1
    return engine


def _money(hundredths: int) -> str:
    return f"{Decimal(hundredths) / 100:,.2f}"


def _hours(minutes: int) -> str:
    return hours_text(minutes)


def _tiles(document: str) -> dict[str, str]:
    return dict(re.findall(r'data-figure="(\w+)"><div class="tile-title">[^<]*</div>'
                           r'<div class="tile-value[^"]*">([^<]*)</div>', document))


def _section(document: str, breakdown: str) -> str:
    found = re.search(rf'<(svg|table)\b[^>]*data-breakdown="{breakdown}"[^>]*>.*?</\1>', document, re.DOTALL)
    assert found, f"no {breakdown} breakdown in the report"
    return found.group(0)


def _rows(section: str) -> dict[str, str]:
    """group (or area code) -> the row's markup, in document order."""
    return {group: inner for _, group, inner in
            re.findall(r'<(g|tr) data-(?:group|area)="([^"]+)"[^>]*>(.*?)</\1>', section, re.DOTALL)}


def _figures_text(row: str) -> str:
    """What a row shows besides its label: values, bar labels and tooltips."""
    without_labels = re.sub(r'<(text|td) class="(?:hlabel|label)[^"]*"[^>]*>.*?</\1>', " ", row, flags=re.DOTALL)
    return " ".join(re.sub(r"<[^>]+>", " ", without_labels).split())


def _cell(row: str, name: str) -> str:
    found = re.search(rf'<td class="num {name}[^"]*">([^<]*)</td>', row)
    assert found, (name, row)
    return found.group(1)


def _assert_hidden(row: str, why: str) -> None:
    shown = _figures_text(row)
    assert "[c]" in shown, (why, shown)
    assert not re.search(r"\d", shown), f"{why}: a figure is shown next to [c]: {shown!r}"


def _too_few(figures: Figures) -> bool:
    return figures.suppressed or figures.hidden("active_volunteers") or figures.hidden("hours")


def test_the_report_is_one_self_contained_document_whose_figures_are_the_statistics(programme: Engine) -> None:
    engine = programme
    document = render_report(engine, *Q2, programme="Tower Hamlets and friends Time Credits")

    assert document.startswith("<!DOCTYPE html>") and document.rstrip().endswith("</html>")
    assert document.count("<html") == 1 and document.count("<body") == 1
    assert "2026 Q2: 1 April – 30 June 2026" in document
    assert "http://" not in document and "https://" not in document
    assert not re.search(r"\b(src|href|xlink:href)\s*=", document), "no asset is fetched from anywhere"
    assert "<script" not in document and "url(" not in document and "@import" not in document
    assert "@page" in document and "size: A4" in document

    totals = participation(engine, "month", *Q2).totals
    assert not totals.suppressed and totals.active_volunteers > 100
    expected = {
        "active_volunteers": f"{totals.active_volunteers:,}",
        "new_volunteers": f"{totals.new_volunteers:,}",
        "retained_volunteers": f"{totals.retained_volunteers:,}",
        "hours": _hours(totals.minutes),
        "credits_spent": _money(totals.credits_spent),
        "credits_gifted": _money(totals.credits_gifted),
    }
    for name in ("new_volunteers", "retained_volunteers"):
        if 0 < getattr(totals, name) < SUPPRESSION_THRESHOLD:
            expected[name] = "[c]"
    assert _tiles(document) == expected  # credits earned, hours given again, is not a tile of its own
    assert totals.credits_spent > 0 and totals.credits_gifted > 0, "the demo spends and gifts"


def test_every_small_cell_shows_c_and_its_true_figures_nowhere(programme: Engine) -> None:
    engine = programme
    document = render_report(engine, *Q2)

    # Westminster's three volunteers: their cell, and the figure they make, appear nowhere.
    assert not re.search(r"(?<![\d,.])21\.65(?!\d)", document), "the small cell's hours are printed"
    area_rows = _rows(_section(document, "area"))
    _assert_hidden(area_rows[WESTMINSTER], "Westminster in the area chart")
    hidden = [group for group, row in area_rows.items() if "[c]" in row]
    assert len(hidden) == 2, "one small area is hidden with the next smallest, so no total gives it away"
    shown_areas = {row.group: row.figures for row in participation(engine, "area", *Q2).rows}
    for group in hidden:
        assert group == WESTMINSTER or shown_areas[group].volunteers == min(
            f.volunteers for g, f in shown_areas.items() if g != WESTMINSTER)

    # Every grouping the report breaks down: each small row is [c] with no figure beside it.
    checked = 0
    for breakdown, start in (("area", Q2[0]), ("age_band", Q2[0]), ("seb", Q2[0]), ("category", Q2[0]),
                             ("activity", Q2[0]), ("month", date(2026, 1, 1))):
        rows = _rows(_section(document, breakdown))
        for row in participation(engine, breakdown, start, Q2[1]).rows:
            small = row.figures.suppressed if breakdown == "category" else _too_few(row.figures)
            if small and row.group in rows:
                _assert_hidden(rows[row.group], f"{breakdown} {row.group}")
                checked += 1
            elif not small and breakdown in ("area", "age_band", "seb", "activity") and "[c]" not in rows[row.group]:
                assert f"{row.figures.active_volunteers:,}" in _figures_text(rows[row.group])
    assert checked >= 1, "the data has small cells to check (Westminster at least)"
    kinds = _rows(_section(document, "activity"))
    _assert_hidden(kinds["environment"], "the three volunteers' litter pick, the only environment hours")
    assert sum("[c]" in row for row in kinds.values()) == 2, "hidden with the next smallest, as areas are"

    # Whatever is marked confidential says only that.
    for marked in re.findall(r'class="[^"]*\bc\b[^"]*"[^>]*>([^<]*)<', document):
        assert marked in ("[c]", "fewer than 5"), marked

    # The cold-spot table: Westminster is "fewer than 5", with no rate, no score and no rank, after every ranked area.
    spots = {spot.area: spot for spot in cold_spots(engine, *Q2)}
    cold = _rows(_section(document, "cold_spots"))
    westminster = cold[WESTMINSTER]
    assert _cell(westminster, "active") == "fewer than 5"
    assert (_cell(westminster, "rate"), _cell(westminster, "score"), _cell(westminster, "rank")) == ("[c]", "[c]", "")
    assert f"{spots[WESTMINSTER].per_1000_residents:.2f}" not in westminster
    ranks = [_cell(row, "rank") for row in cold.values()]
    assert ranks == [str(n) for n in range(1, len(ranks) - len(hidden) + 1)] + [""] * len(hidden), ranks
    for code in hidden:
        if code != WESTMINSTER:
            assert (_cell(cold[code], "active"), _cell(cold[code], "rate"), _cell(cold[code], "score")) == \
                ("[c]", "[c]", "[c]"), "the area hidden to protect Westminster is hidden in the table too"


def test_the_cold_spot_table_lists_the_areas_in_rank_order(programme: Engine) -> None:
    engine = programme
    document = render_report(engine, *Q2)
    spots = cold_spots(engine, *Q2)
    assert len(spots) == 8
    section = _section(document, "cold_spots")
    rows = _rows(section)
    assert list(rows) == [spot.area for spot in spots]
    for row, spot in zip(rows.values(), spots, strict=True):
        assert _cell(row, "rank") == ("" if spot.rank is None else str(spot.rank))
        assert f'<td class="name">{spot.name}</td>' in row
        if not spot.suppressed and "[c]" not in row:
            assert _cell(row, "active") == f"{spot.active_volunteers:,}"
            assert _cell(row, "rate") == f"{spot.per_1000_residents:.2f}"
            assert _cell(row, "score") == f"{spot.cold_score:.2f}"
    assert "cold score = need × (1 − participation index)" in document
    assert "synthetic sample for the demo, not official figures" in document, "the areas' source is stated"


def test_a_period_with_fewer_than_5_volunteers_shows_no_figure_at_all(programme: Engine) -> None:
    engine = programme
    totals = participation(engine, "month", *Q3).totals
    assert totals.volunteers == 3 and totals.minutes == 3 * FEW_MINUTES
    document = render_report(engine, *Q3)

    assert set(_tiles(document).values()) == {"[c]"}
    assert "Fewer than 5 volunteers took part in this period" in document
    assert not re.search(r"(?<![\d,.])21\.65(?!\d)", document)
    months = _rows(_section(document, "month"))
    _assert_hidden(months["2026-08"], "August")
    assert "[c]" not in months["2026-07"] + months["2026-09"], "a month nobody took part in hides nothing"
    # No breakdown at all: which rows exist (an area, an age band) would say who the few volunteers are.
    for breakdown in ("area", "cold_spots", "age_band", "seb", "category", "activity"):
        assert f'data-breakdown="{breakdown}"' not in document
    # spending, kinds of activity, areas, people
    assert document.count("Not broken down: fewer than 5 volunteers took part") == 4
    assert "Westminster" not in document and "25-34" not in document


def test_report_command_writes_the_file_and_refuses_a_bad_period(programme: Engine, tmp_path: Path) -> None:
    console, out = _console()
    target = tmp_path / "papers" / "q2.html"
    assert report_command("2026-q2", target, programme, console) == 0
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "2026 Q2: 1 April – 30 June 2026" in out.getvalue()
    assert report_command("2026-Q2", tmp_path, programme, console) == 0
    assert (tmp_path / "participation-report-2026-Q2.html").is_file()
    console, out = _console()
    assert report_command("2026-Q5", tmp_path / "x.html", programme, console) == 2
    assert "not a period" in out.getvalue() and not (tmp_path / "x.html").exists()
