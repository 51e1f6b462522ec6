"""Hours' kinds of activity travel from the event and the spreadsheet row to the statistics breakdown."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime

from sqlalchemy import Engine, text

from ledger.activities import activity_category
from ledger.events import DecodedEvent, EntryReversed, HoursApproved, HoursLogged, decode_event, encode_event
from producers.hours_csv import RejectCode, parse_sheet
from stats.queries import participation
from tests.integration.test_statistics import AREAS, END, START, _apply, _ev, _registry

DAY = date(2026, 6, 10)
AT = datetime(2026, 6, 10, 12, tzinfo=UTC)


def _hours(volunteers: list[str], category: str | None, minutes: int = 60) -> list[DecodedEvent]:
    events = []
    for volunteer in volunteers:
        extra = {} if category is None else {"category": category}
        log = _ev(HoursLogged(volunteer_id=volunteer, org_id="club", date=DAY, minutes=minutes, **extra),
                  AT)
        events += [log, _ev(HoursApproved(log_event_id=log.event_id, volunteer_id=volunteer, org_id="club"), AT)]
    return events


def _by_activity(engine: Engine) -> dict[str, object]:
    return {row.group: row for row in participation(engine, "activity", START, END).rows}


def test_an_event_written_before_categories_decodes_as_other() -> None:
    _, raw = encode_event(HoursLogged(volunteer_id="v", org_id="club", date=DAY, minutes=30),
                          actor="org:club", occurred_at=AT)
    envelope = json.loads(raw)
    del envelope["payload"]["category"]
    decoded = decode_event(json.dumps(envelope).encode())
    assert isinstance(decoded, DecodedEvent) and decoded.payload.category == "other"
    envelope["payload"]["category"] = "knitting"
    assert not isinstance(decode_event(json.dumps(envelope).encode()), DecodedEvent)


def test_hours_count_under_their_kind_of_activity_and_a_reversal_takes_them_back(engine: Engine) -> None:
    friends = [f"f{n}" for n in range(6)]
    growers = [f"g{n}" for n in range(5)]
    _apply(engine, _registry([(v, AREAS[0], "25-34", True) for v in friends + growers]))
    befriending = _hours(friends, "befriending", minutes=90)
    _apply(engine, befriending + _hours(growers, "environment"))
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT category, count(*) FROM hours_logs GROUP BY category")).all())
    assert stored == {"befriending": 6, "environment": 5}

    rows = _by_activity(engine)
    assert set(rows) == {"befriending", "environment"}
    assert rows["befriending"].label == "Befriending" and rows["befriending"].figures.minutes == 6 * 90
    assert rows["environment"].figures.active_volunteers == 5 and rows["environment"].figures.minutes == 5 * 60

    approval = befriending[1]
    _apply(engine, [_ev(EntryReversed(target_event_id=approval.event_id, volunteer_id="f0", reason="mistake"), AT)])
    rows = _by_activity(engine)
    assert rows["befriending"].figures.minutes == 5 * 90, "the reversal counts against the kind it corrects"
    assert rows["befriending"].figures.active_volunteers == 5


def test_a_kind_of_activity_with_fewer_than_five_volunteers_shows_no_figures(engine: Engine) -> None:
    few = [f"a{n}" for n in range(4)]
    many = [f"b{n}" for n in range(5)]
    _apply(engine, _registry([(v, AREAS[0], "25-34", True) for v in few + many]))
    _apply(engine, _hours(few, "food_and_essentials") + _hours(many, None))
    rows = _by_activity(engine)
    assert rows["food_and_essentials"].figures.suppressed and rows["food_and_essentials"].label == "Food and essentials"
    assert not rows["other"].figures.suppressed and rows["other"].figures.active_volunteers == 5, \
        "hours logged without a category count as other"


def test_a_spreadsheet_category_is_read_as_the_code_or_the_words(engine: Engine) -> None:
    sheet = parse_sheet(
        "Volunteer,Date,Hours,Activity,Category\n"
        + "".join(f"s{n},10/06/2026,2,Kitchen,Food & essentials\n" for n in range(3))
        + "".join(f"s{n},10/06/2026,1,Gym,sport_and_wellbeing\n" for n in range(3, 5))
        + "s5,10/06/2026,1,Desk,\n"
        + "s6,10/06/2026,1,Knitting,Knitting\n",
        "club", today=date(2026, 6, 30))
    assert [r.hours.category for r in sheet.rows] == ["food_and_essentials"] * 3 + ["sport_and_wellbeing"] * 2 + ["other"]
    assert [(r.line, r.reason) for r in sheet.rejected] == [(8, RejectCode.UNKNOWN_CATEGORY)]
    assert "Food and essentials" in sheet.rejected[0].message

    _apply(engine, _registry([(f"s{n}", AREAS[0], "25-34", True) for n in range(6)]))
    events = []
    for row in sheet.rows:
        log = _ev(row.hours, AT, event_id=row.event_id)
        events += [log, _ev(HoursApproved(log_event_id=log.event_id, volunteer_id=row.hours.volunteer_id,
                                          org_id="club"), AT)]
    _apply(engine, events)
    rows = _by_activity(engine)
    assert set(rows) == {"food_and_essentials", "sport_and_wellbeing", "other"}
    assert all(row.figures.suppressed for row in rows.values()), "each kind describes fewer than five volunteers"
    assert participation(engine, "month", START, END).totals.minutes == 3 * 120 + 2 * 60 + 60


def test_the_words_of_a_kind_of_activity_are_read_whatever_their_case_or_separators() -> None:
    assert activity_category("ARTS AND CULTURE") == "arts_and_culture"
    assert activity_category(" admin-and-fundraising ") == "admin_and_fundraising"
    assert activity_category("Education & mentoring") == "education_and_mentoring"
    assert activity_category("gardening") is None
