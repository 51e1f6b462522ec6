"""The rule of a series (docs/design.md §5.13): when its sessions start, their ids, and the repeats refused."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.events import OpportunityListed, decode_event, encode_event
from ledger.series import Repeat, SeriesRefused, series_events, session_starts

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
#: Saturday 17 October 2026, 10:00 in London (British Summer Time, UTC+1).
FIRST = datetime(2026, 10, 17, 9, 0, tzinfo=UTC)


def _listing(**changes: object) -> OpportunityListed:
    fields: dict[str, object] = {"opportunity_id": "x", "partner_id": "lido", "title": "Swim class",
                                 "category": "sport", "cost": 200, "capacity": 6, "area": "E09000030",
                                 "starts_at": FIRST}
    return OpportunityListed(**{**fields, **changes})  # type: ignore[arg-type]


def test_weekly_sessions_keep_their_london_time_across_the_change_of_clocks() -> None:
    starts = session_starts(FIRST, Repeat("week", 3), NOW)
    # Clocks go back on 25 October 2026: 10:00 in London is 09:00 UTC before and 10:00 UTC after.
    assert starts == [FIRST, datetime(2026, 10, 24, 9, 0, tzinfo=UTC), datetime(2026, 10, 31, 10, 0, tzinfo=UTC)]
    fortnightly = session_starts(FIRST, Repeat("fortnight", 2), NOW)
    assert fortnightly[1] == datetime(2026, 10, 31, 10, 0, tzinfo=UTC)


def test_a_series_is_its_sessions_sharing_everything_but_their_start_and_id() -> None:
    events = series_events("ser-swim", _listing(), Repeat("week", 4), NOW)
    assert [e.opportunity_id for e in events] == ["ser-swim-1", "ser-swim-2", "ser-swim-3", "ser-swim-4"]
    assert {e.series_id for e in events} == {"ser-swim"}
    assert {(e.partner_id, e.title, e.category, e.cost, e.capacity, e.area) for e in events} == {
        ("lido", "Swim class", "sport", 200, 6, "E09000030")}
    assert len({e.starts_at for e in events}) == 4
    # The same series listed again gives the same ids: the sessions' ids are the series' and their numbers.
    assert [e.opportunity_id for e in series_events("ser-swim", _listing(), Repeat("week", 4), NOW)] == [
        e.opportunity_id for e in events]


@pytest.mark.parametrize(("first", "repeat", "code"), [
    (FIRST, Repeat("month", 3), "unknown_repeat"),
    (FIRST, Repeat("week", 1), "too_few_sessions"),
    (FIRST, Repeat("week", 53), "too_many_sessions"),
    (None, Repeat("week", 3), "starts_at_required"),
    (NOW, Repeat("week", 3), "starts_in_past"),
    (datetime(9999, 12, 20, tzinfo=UTC), Repeat("week", 3), "invalid_request"),
])
def test_a_repeat_that_is_not_sane_is_refused_with_a_code(first: datetime | None, repeat: Repeat, code: str) -> None:
    with pytest.raises(SeriesRefused) as refused:
        session_starts(first, repeat, NOW)
    assert refused.value.code == code


def test_a_series_id_leaves_room_for_the_session_numbers() -> None:
    with pytest.raises(SeriesRefused, match="at most 61"):
        series_events("s" * 62, _listing(), Repeat("week", 2), NOW)
    assert series_events("s" * 61, _listing(), Repeat("week", 52), NOW)[-1].opportunity_id == "s" * 61 + "-52"


def test_an_opportunity_listed_before_series_decodes_as_a_one_off() -> None:
    _, raw = encode_event(_listing(), actor="test")
    older = raw.replace(b',"series_id":null', b"")
    assert b"series_id" not in older
    decoded = decode_event(older)
    assert decoded.payload.series_id is None  # type: ignore[union-attr]


def test_a_list_gathers_each_series_where_its_first_session_falls() -> None:
    from web.series import grouped

    items = [("swim-1", "swim"), ("talk", None), ("yoga-1", "yoga"), ("swim-2", "swim"), ("walk", None),
             ("yoga-2", "yoga")]
    lines = grouped(items, lambda item: item[1])
    assert [(line.first[0], [s[0] for s in line.sessions]) for line in lines] == [
        ("swim-1", ["swim-1", "swim-2"]), ("talk", []), ("yoga-1", ["yoga-1", "yoga-2"]), ("walk", [])]
