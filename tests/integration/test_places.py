"""Capacity decided by the worker in order, and waiting-list offers holding places (docs/design.md §5.8), on real
PostgreSQL with raw batches."""
from __future__ import annotations

import threading
from datetime import date, timedelta
from uuid import uuid4

import pytest
from sqlalchemy import Engine, insert, select, text

from ledger.events import (
    BookingAttended,
    BookingCancelled,
    EntryReversed,
    HoursLogged,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    VolunteerRegistered,
)
from ledger.pg import schema
from ledger.pg.processing import EventProcessor, run_batch
from ledger.pg.registry import StoredRegistry
from ledger.pg.waitlist import join, offer_places, places_of
from tests.integration.test_processing import AREA, WHEN, ev, registry

PEOPLE = ("ana", "ben", "cy", "dee")


def book(volunteer: str, opportunity: str = "class"):  # type: ignore[no-untyped-def]
    return ev(OpportunityBooked(volunteer_id=volunteer, opportunity_id=opportunity, partner_id="lido", amount=100))


@pytest.fixture()
def processor(engine: Engine) -> EventProcessor:
    """Four volunteers with 5.00 credits each, and a class with two places at the lido."""
    processor = EventProcessor(engine)
    setup = [*registry(),
             *[ev(VolunteerRegistered(volunteer_id=v, area=AREA, consent_stats=False)) for v in PEOPLE[2:]],
             *[ev(MembershipStarted(membership_id=uuid4(), org_id="garden", volunteer_id=v)) for v in PEOPLE[2:]],
             ev(OpportunityListed(opportunity_id="class", partner_id="lido", title="Swim class", category="sport",
                                  cost=100, capacity=2, area=AREA)),
             *[ev(HoursLogged(volunteer_id=v, org_id="garden", date=date(2026, 11, 1), minutes=300)) for v in PEOPLE]]
    assert all(o.applied for o in processor.process(setup).outcomes)
    return processor


def test_bookings_beyond_capacity_are_refused_in_order_within_one_batch(processor: EventProcessor) -> None:
    outcomes = processor.process([book(v) for v in PEOPLE]).outcomes
    assert [o.reason for o in outcomes] == [None, None, "fully_booked", "fully_booked"]
    assert "no places left" in (outcomes[2].message or "")
    # No limit on an opportunity without a capacity: four bookings of the swim, all applied.
    assert all(o.applied for o in processor.process([book(v, "swim") for v in PEOPLE]).outcomes)


def test_a_settled_booking_frees_its_place_for_the_events_after_it(processor: EventProcessor) -> None:
    ana, ben = book("ana"), book("ben")
    assert all(o.applied for o in processor.process([ana, ben]).outcomes)
    # Refused before the cancellation, applied after it, refused again once the place is taken.
    batch = [book("cy"), ev(BookingCancelled(booking_event_id=ana.event_id, volunteer_id="ana")), book("cy"),
             book("dee")]
    assert [o.reason for o in processor.process(batch).outcomes] == ["fully_booked", None, None, "fully_booked"]
    # Attendance and reversal settle a booking too: each frees a place (counted from the ledger in a new batch).
    batch = [ev(BookingAttended(booking_event_id=ben.event_id, volunteer_id="ben"))]
    assert processor.process(batch).outcomes[0].applied
    assert processor.process([book("dee")]).outcomes[0].applied
    assert processor.process([book("ana")]).outcomes[0].reason == "fully_booked"


def test_a_reversed_booking_frees_its_place(processor: EventProcessor) -> None:
    ana = book("ana")
    assert all(o.applied for o in processor.process([ana, book("ben")]).outcomes)
    reversal = ev(EntryReversed(target_event_id=ana.event_id, volunteer_id="ana", reason="booked by mistake"))
    assert [o.reason for o in processor.process([book("cy"), reversal, book("cy")]).outcomes] == [
        "fully_booked", None, None]


def test_a_live_offer_holds_the_place_for_its_volunteer_only(processor: EventProcessor, engine: Engine) -> None:
    assert processor.process([book("ana")]).outcomes[0].applied
    w = schema.waitlist
    with engine.begin() as conn:
        conn.execute(insert(w).values(opportunity_id="class", volunteer_id="ben", joined_at=WHEN,
                                      offered_at=WHEN, offered_until=WHEN + timedelta(hours=1)))
        conn.execute(insert(w).values(opportunity_id="class", volunteer_id="dee", joined_at=WHEN,
                                      offered_at=WHEN - timedelta(hours=25), offered_until=WHEN - timedelta(hours=1)))
        # The API's pre-check counts as the worker does.
        assert StoredRegistry(conn).places_taken("class", "cy", WHEN) == 2
        assert StoredRegistry(conn).places_taken("class", "ben", WHEN) == 1
    # cy is refused (the last place is held for ben; dee's offer ran out before the event and holds nothing);
    # ben books it, which takes him off the list; then the class is full for everyone.
    outcomes = processor.process([book("cy"), book("ben"), book("dee")]).outcomes
    assert [o.reason for o in outcomes] == ["fully_booked", None, "fully_booked"]
    with engine.connect() as conn:
        assert conn.execute(select(w.c.volunteer_id)).scalars().all() == ["dee"]


def test_offers_go_in_order_and_pass_on_when_they_lapse(processor: EventProcessor, engine: Engine) -> None:
    ana = book("ana")
    assert all(o.applied for o in processor.process([ana, book("ben")]).outcomes)
    now = WHEN
    with engine.begin() as conn:
        for minutes, volunteer in enumerate(("dee", "cy")):
            assert join(conn, "class", volunteer, now + timedelta(minutes=minutes))
        assert not join(conn, "class", "cy", now)  # once on a list
        assert [(p.volunteer_id, p.position) for p in places_of(conn, "cy")] == [("cy", 2)]
    assert offer_places(engine, now).offered == []  # full: nothing to offer
    assert processor.process([ev(BookingCancelled(booking_event_id=ana.event_id, volunteer_id="ana"))]).outcomes[0].applied

    run = offer_places(engine, now + timedelta(minutes=5), offer_hours=24)
    assert [(o.volunteer_id, o.offered_until) for o in run.offered] == [("dee", now + timedelta(minutes=5, hours=24))]
    assert offer_places(engine, now + timedelta(minutes=6)).offered == []  # the place is held: not offered twice
    with engine.connect() as conn:
        assert [(p.position, p.offered_until is not None) for p in places_of(conn, "dee")] == [(1, True)]
        assert [p.position for p in places_of(conn, "cy")] == [2]

    # A day later dee has not booked: the offer lapses, dee leaves the list and cy is offered the place.
    later = now + timedelta(hours=25)
    run = offer_places(engine, later)
    assert run.lapsed == [("class", "dee")]
    assert [o.volunteer_id for o in run.offered] == ["cy"]
    with engine.connect() as conn:
        assert places_of(conn, "dee") == [] and places_of(conn, "cy")[0].position == 1


def assert_waits_for_a_lock(engine: Engine, thread: threading.Thread, results: list[str | None]) -> None:
    """`thread`'s batch waits for a lock another transaction holds, rather than deciding alongside it."""
    waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                   "AND datname = current_database()")

    def waits() -> int:
        # A transaction keeps the pg_stat_activity it first read: each look is a transaction of its own, or a
        # watcher that looked before the second batch connected would never see it wait.
        with engine.connect() as watcher:
            return int(watcher.execute(waiting).scalar_one())

    for _ in range(1200):  # up to a minute on a loaded machine; it stops as soon as the wait is seen
        if waits() > 0 or not thread.is_alive():
            break
        thread.join(0.05)
    assert thread.is_alive() and waits() >= 1, (
        f"the second batch should wait for the first, not decide alongside it: {results}")


def test_two_workers_booking_the_last_place_at_once_apply_exactly_one(processor: EventProcessor,
                                                                      engine: Engine) -> None:
    """Two batches on different partitions (two workers' transactions): the second counts the places only once
    the first has committed, so it cannot take a place the first took."""
    assert processor.process([book("ana")]).outcomes[0].applied
    results: list[str | None] = []
    first = engine.connect()
    transaction = first.begin()
    try:
        assert run_batch(first, [book("ben")], ["tc.activity/0"]).outcomes[0].applied

        def second() -> None:
            with engine.begin() as conn:
                results.append(run_batch(conn, [book("cy")], ["tc.activity/1"]).outcomes[0].reason)

        thread = threading.Thread(target=second)
        thread.start()
        assert_waits_for_a_lock(engine, thread, results)
        transaction.commit()
    finally:
        first.close()
    thread.join(30)
    assert results == ["fully_booked"]
