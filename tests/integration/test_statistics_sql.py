"""PostgreSQL's figures (stats/aggregate.py) equal the rules of docs/design.md §5.3 applied fact by fact.

For random programmes — registered and unregistered volunteers, consent given or not, approvals and their
reversals, hours before the period (retention, first hours), spending with and without a category — every
breakdown of a year, a quarter and a month is computed by PostgreSQL and by the plain reference
(tests/integration/stats_reference.py), and every figure and every contributor count must be the same.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select, text

from ledger.pg import schema
from stats import rollups
from stats.model import GROUPINGS
from stats.queries import participation
from tests.integration.stats_reference import Reference
from timecredits.benchmark.statistics import load_programme, run_statistics, statistics_table

AREAS = ("E09000001", "E09000002", "E09000003")
YEAR = 2026


@dataclass(frozen=True)
class Person:
    registered: bool
    area: str | None
    age_band: str | None
    consent: bool
    first_time: bool | None


@dataclass(frozen=True)
class Act:
    kind: str
    who: int
    month: int  # 0: December of the year before (retention and first hours); 1..12 the year's months
    where: int
    size: int
    reversed: bool


people = st.builds(Person, st.booleans() | st.just(True), st.sampled_from(AREAS), st.sampled_from(("25-34", None)),
                   st.booleans(), st.sampled_from((True, False, None)))
acts = st.builds(Act, st.sampled_from(("hours",) * 4 + ("book", "attend", "cancel", "redeem", "gift", "expired")),
                 st.integers(0, 1_000), st.integers(0, 12), st.integers(0, 5), st.integers(1, 300),
                 st.sampled_from((False,) * 4 + (True,)))
programmes = st.tuples(st.lists(people, min_size=1, max_size=12), st.lists(acts, min_size=1, max_size=80))


def _load(engine: Engine, year: int, programme: tuple[list[Person], list[Act]]) -> None:
    persons, activity = programme
    ids = [f"v-{n}" for n in range(len(persons))]
    with engine.begin() as conn:
        registered = [{"id": volunteer, "area": p.area, "age_band": p.age_band, "seb": "lower" if p.consent else None,
                       "consent_stats": p.consent, "first_time_volunteer": p.first_time}
                      for volunteer, p in zip(ids, persons, strict=True) if p.registered]
        if registered:
            conn.execute(insert(schema.volunteers), registered)
        facts: list[dict[str, Any]] = []
        for act in activity:
            day = date(year - 1, 12, 1 + act.size % 31) if act.month == 0 else date(year, act.month, 1 + act.size % 28)
            base = {"entry_id": uuid4().int % 2**62, "occurred_on": day, "volunteer_id": ids[act.who % len(ids)],
                    "sign": 1, "other_volunteer_id": None, "org_id": None, "category": None,
                    "activity_category": None, "minutes": 0, "original_entry_id": None}
            match act.kind:
                case "hours":
                    fact = {**base, "kind": "hours_approved", "org_id": ("club", "garden")[act.where % 2],
                            "activity_category": ("befriending", "environment", None)[act.where % 3],
                            "minutes": act.size, "amount": round(act.size * 100 / 60)}
                case "gift":
                    fact = {**base, "kind": "credits_gifted", "amount": act.size,
                            "other_volunteer_id": ids[(act.who + 1) % len(ids)]}
                case _:
                    kind = {"book": "opportunity_booked", "attend": "booking_attended", "cancel": "booking_cancelled",
                            "redeem": "credits_redeemed", "expired": "booking_expired"}[act.kind]
                    fact = {**base, "kind": kind, "org_id": "lido", "amount": act.size * 10,
                            "category": ("sport", "culture", None)[act.where % 3]}
            facts.append(fact)
            if act.reversed:
                facts.append({**fact, "entry_id": uuid4().int % 2**62, "sign": -1,
                              "original_entry_id": fact["entry_id"]})
        # Two statements, the reversals after what they reverse, as the statistics consumer may write them.
        conn.execute(insert(schema.stats_facts), [f for f in facts if f["sign"] == 1])
        if reversals := [f for f in facts if f["sign"] == -1]:
            conn.execute(insert(schema.stats_facts), reversals)


def _compare(engine: Engine, start: date, end: date) -> None:
    reference = Reference(engine, start, end)
    for group_by in GROUPINGS:
        answer = participation(engine, group_by, start, end)
        rows, total = reference.breakdown(group_by)
        assert {row.group: row.figures for row in answer.rows} == rows, (group_by, start, end)
        assert answer.totals == total, (group_by, start, end)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(programme=programmes)
def test_every_breakdown_postgresql_computes_equals_the_rules_applied_fact_by_fact(
    engine: Engine, programme: tuple[list[Person], list[Act]]
) -> None:
    _load(engine, YEAR, programme)
    try:
        _compare(engine, date(YEAR, 1, 1), date(YEAR, 12, 31))
        _compare(engine, date(YEAR, 1, 1), date(YEAR, 3, 31))
        _compare(engine, date(YEAR, 5, 1), date(YEAR, 5, 31))
    finally:  # the next example starts from an empty programme (the test's database owner may delete)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM stats_facts; DELETE FROM stats_cells; DELETE FROM stats_volunteer_months;"
                              " DELETE FROM stats_first_hours; DELETE FROM volunteers"))


def test_first_hours_follow_reversals_whatever_order_the_facts_arrive_in(engine: Engine) -> None:
    """A reversal of a volunteer's first approval moves their first hours to the next approval never reversed;
    reversing that too leaves them none; the facts' order of arrival changes nothing."""
    def fact(entry_id: int, day: date, sign: int = 1, original: int | None = None) -> dict[str, Any]:
        return {"entry_id": entry_id, "kind": "hours_approved", "occurred_on": day, "volunteer_id": "v-first",
                "org_id": "club", "amount": 100, "minutes": 60, "sign": sign, "original_entry_id": original}

    def first_on() -> date | None:
        with engine.connect() as conn:
            return conn.execute(select(schema.stats_first_hours.c.first_on)
                                .where(schema.stats_first_hours.c.volunteer_id == "v-first")).scalar_one()

    with engine.begin() as conn:
        conn.execute(insert(schema.stats_facts), [fact(1, date(2026, 3, 2)), fact(2, date(2026, 1, 5))])
    assert first_on() == date(2026, 1, 5)
    with engine.begin() as conn:
        conn.execute(insert(schema.stats_facts), [fact(3, date(2026, 1, 5), -1, original=2)])
    assert first_on() == date(2026, 3, 2)
    with engine.begin() as conn:  # the reversal of a fact not yet written, then the fact: the same answer
        conn.execute(insert(schema.stats_facts), [fact(5, date(2026, 3, 2), -1, original=1)])
        conn.execute(insert(schema.stats_facts), [fact(4, date(2026, 2, 1), -1, original=6)])
        conn.execute(insert(schema.stats_facts), [fact(6, date(2026, 2, 1))])
    assert first_on() is None
    with engine.begin() as conn:  # a repeat of a fact already written adds no row and changes nothing
        conn.execute(text("INSERT INTO stats_facts (entry_id, kind, occurred_on, volunteer_id, amount, minutes, sign)"
                          " VALUES (2, 'hours_approved', '2026-01-05', 'v-first', 100, 60, 1)"
                          " ON CONFLICT DO NOTHING"))
    assert first_on() is None


def test_two_writers_of_one_volunteer_leave_each_month_its_previous_active_month(engine: Engine) -> None:
    """Two transactions writing one volunteer's facts of different months at once: the second waits for the
    first's lock on the volunteer, then sees its month, so the later month's previous active month is right."""
    def fact(entry_id: int, kind: str, day: date, minutes: int) -> dict[str, Any]:
        return {"entry_id": entry_id, "kind": kind, "occurred_on": day, "volunteer_id": "v-both", "org_id": "club",
                "amount": 100, "minutes": minutes, "sign": 1}

    first = engine.connect()
    try:
        with first.begin():
            first.execute(insert(schema.stats_facts), [fact(11, "hours_approved", date(2026, 5, 4), 60)])
            second_done = threading.Event()

            def second() -> None:
                with engine.begin() as conn:
                    conn.execute(insert(schema.stats_facts), [fact(12, "credits_redeemed", date(2026, 7, 9), 0)])
                second_done.set()

            writer = threading.Thread(target=second)
            writer.start()
            assert not second_done.wait(1.0), "the second writer did not wait for the first's lock on the volunteer"
        writer.join(30)
        assert second_done.is_set()
    finally:
        first.close()
    with engine.connect() as conn:
        months = dict(conn.execute(text("SELECT month, prev_active FROM stats_volunteer_months "
                                        "WHERE volunteer_id = 'v-both'")).all())
        assert months == {date(2026, 5, 1): None, date(2026, 7, 1): date(2026, 5, 1)}
        assert set(rollups.differences(conn).values()) == {0}


def test_the_rollups_the_trigger_keeps_equal_those_worked_out_from_the_facts(engine: Engine) -> None:
    """The benchmark's programme, written a year a statement with the triggers on, leaves the rollups the facts
    give (stats.rollups.differences), and so do facts an owner changes or deletes; a rollup changed by hand is
    found."""
    load_programme(engine, 300, 2, date(2026, 11, 30), bulk=False)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM stats_cells")).scalar_one() > 0
        assert conn.execute(text("SELECT count(*) FROM stats_volunteer_months WHERE prev_active IS NOT NULL")
                            ).scalar_one() > 0
        assert set(rollups.differences(conn).values()) == {0}
    # An owner putting a wrong fact right (docs/operations.md): changed, deleted, written again.
    with engine.begin() as conn:
        conn.execute(text("UPDATE stats_facts SET minutes = minutes + 30, occurred_on = occurred_on + 40 "
                          "WHERE entry_id % 50 = 3"))
        conn.execute(text("DELETE FROM stats_facts WHERE entry_id % 50 = 4 OR volunteer_id = 'bv-7'"))
    with engine.connect() as conn:
        assert set(rollups.differences(conn).values()) == {0}
    with engine.begin() as conn:
        # One row each (a row's ctid is its partition's: with the partition's oid, it is the table's).
        conn.execute(text("UPDATE stats_cells SET minutes = minutes + 1 WHERE (tableoid, ctid) = "
                          "(SELECT tableoid, ctid FROM stats_cells WHERE hours_facts > 0 LIMIT 1)"))
        conn.execute(text("UPDATE stats_volunteer_months SET prev_active = NULL WHERE (tableoid, ctid) = "
                          "(SELECT tableoid, ctid FROM stats_volunteer_months WHERE prev_active IS NOT NULL LIMIT 1)"))
        conn.execute(text("UPDATE stats_first_hours SET first_on = first_on - 1 "
                          "WHERE volunteer_id = (SELECT min(volunteer_id) FROM stats_first_hours)"))
    with engine.connect() as conn:
        # each changed row is missing once and extra once
        assert rollups.differences(conn) == {"stats_cells": 2, "stats_volunteer_months": 2, "stats_first_hours": 2}


def test_the_statistics_benchmark_times_every_breakdown_of_a_programme_postgresql_and_the_rules_agree_on(
    engine: Engine
) -> None:
    """`timecredits bench`'s figure 5 on a small programme: every breakdown timed beside the scan ceiling, and
    the figures it timed are those of the rules applied fact by fact."""
    start, end = date(2025, 12, 1), date(2026, 11, 30)
    result = run_statistics(engine, start, end, volunteers=400, years=3, repeats=1)
    assert [t.name for t in result.breakdowns] == [*GROUPINGS, "cold spots"]
    assert result.facts > result.facts_in_period > 0 and all(t.seconds for t in result.breakdowns)
    # The batches written afterwards (with the trigger) are facts of the period's last month, counted below.
    assert result.writes.per_second > 0 and result.writes.ceiling_per_second > 0
    with engine.connect() as conn:
        assert set(rollups.differences(conn).values()) == {0}  # the bulk load's rebuild
    _compare(engine, start, end)
    assert "5. statistics: 400 volunteers" in str(statistics_table(result).title)
