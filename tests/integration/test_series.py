"""A series of sessions through the worker (docs/design.md §5.13): each session is an opportunity of its own, so
its capacity, bookings and waiting list are its own (§5.8), on real PostgreSQL with raw batches."""
from __future__ import annotations

import threading
from datetime import date, timedelta
from uuid import uuid4

import pytest
from sqlalchemy import Engine, select, text

from ledger.events import HoursLogged, MembershipStarted, OpportunityBooked, OpportunityListed, VolunteerRegistered
from ledger.pg import schema
from ledger.pg.processing import EventProcessor, run_batch
from ledger.series import Repeat, series_events
from tests.integration.test_places import assert_waits_for_a_lock
from tests.integration.test_processing import AREA, WHEN, ev, registry

PEOPLE = ("ana", "ben", "cy", "dee")
SERIES = "ser-swim"


def book(volunteer: str, session: int):  # type: ignore[no-untyped-def]
    return ev(OpportunityBooked(volunteer_id=volunteer, opportunity_id=f"{SERIES}-{session}", partner_id="lido",
                                amount=100))


@pytest.fixture()
def processor(engine: Engine) -> EventProcessor:
    """Four volunteers with 5.00 credits each, and a weekly swim class of 4 sessions of two places each, listed
    as the API lists a series (`ledger.series.series_events`)."""
    first = OpportunityListed(opportunity_id="first", partner_id="lido", title="Swim class", category="sport",
                              cost=100, capacity=2, area=AREA, starts_at=WHEN + timedelta(days=3))
    processor = EventProcessor(engine)
    setup = [*registry(),
             *[ev(VolunteerRegistered(volunteer_id=v, area=AREA, consent_stats=False)) for v in PEOPLE[2:]],
             *[ev(MembershipStarted(membership_id=uuid4(), org_id="garden", volunteer_id=v)) for v in PEOPLE[2:]],
             *[ev(e) for e in series_events(SERIES, first, Repeat("week", 4), WHEN)],
             *[ev(HoursLogged(volunteer_id=v, org_id="garden", date=date(2026, 11, 1), minutes=300)) for v in PEOPLE]]
    assert all(o.applied for o in processor.process(setup).outcomes)
    return processor


def test_the_worker_writes_each_session_as_an_opportunity_of_its_series(processor: EventProcessor,
                                                                        engine: Engine) -> None:
    op = schema.opportunities
    with engine.connect() as conn:
        rows = conn.execute(select(op.c.id, op.c.series_id, op.c.starts_at, op.c.capacity, op.c.title)
                            .where(op.c.series_id == SERIES).order_by(op.c.starts_at)).all()
        one_off = conn.execute(select(op.c.series_id).where(op.c.id == "swim")).scalar_one()
    assert [r.id for r in rows] == [f"{SERIES}-{n}" for n in (1, 2, 3, 4)]
    assert [r.starts_at - rows[0].starts_at for r in rows] == [timedelta(days=7 * n) for n in range(4)]
    assert {(r.capacity, r.title) for r in rows} == {(2, "Swim class")}
    assert one_off is None
    # An edit of one session (the same event again, with its series id) changes that session only.
    edited = series_events(SERIES, OpportunityListed(opportunity_id="x", partner_id="lido", title="Swim class",
                                                     category="sport", cost=100, capacity=5, area=AREA,
                                                     starts_at=WHEN + timedelta(days=3)), Repeat("week", 2), WHEN)[1]
    assert processor.process([ev(edited)]).outcomes[0].applied
    with engine.connect() as conn:
        capacities = dict(conn.execute(select(op.c.id, op.c.capacity).where(op.c.series_id == SERIES)).all())
    assert capacities == {f"{SERIES}-1": 2, f"{SERIES}-2": 5, f"{SERIES}-3": 2, f"{SERIES}-4": 2}


def test_the_capacity_of_one_session_is_enforced_on_that_session_only(processor: EventProcessor) -> None:
    outcomes = processor.process([book("ana", 2), book("ben", 2), book("cy", 2), book("cy", 3), book("dee", 2),
                                  book("dee", 3)]).outcomes
    assert [o.reason for o in outcomes] == [None, None, "fully_booked", None, "fully_booked", None]
    # Session 3 is now full too; sessions 1 and 4 have all their places.
    assert processor.process([book("ana", 3)]).outcomes[0].reason == "fully_booked"
    assert all(o.applied for o in processor.process([book("ana", 1), book("ben", 1), book("cy", 4)]).outcomes)


def test_two_racing_for_the_last_place_of_session_2_while_session_3_has_room(processor: EventProcessor,
                                                                             engine: Engine) -> None:
    """Two workers' batches book the last place of session 2 at once: the second waits for the first and is
    refused. A third batch booking session 3 meanwhile waits for neither and is applied."""
    assert processor.process([book("ana", 2)]).outcomes[0].applied
    results: list[str | None] = []
    first = engine.connect()
    transaction = first.begin()
    try:
        assert run_batch(first, [book("ben", 2)], ["tc.activity/0"]).outcomes[0].applied

        def second() -> None:
            with engine.begin() as conn:
                results.append(run_batch(conn, [book("cy", 2)], ["tc.activity/1"]).outcomes[0].reason)

        thread = threading.Thread(target=second)
        thread.start()
        assert_waits_for_a_lock(engine, thread, results)
        # Session 3's row is not locked by either: a batch booking it commits while the first is still open
        # (a lock wait here would end in a lock timeout rather than a pass).
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '20s'"))
            assert run_batch(conn, [book("dee", 3)], ["tc.activity/2"]).outcomes[0].applied
        transaction.commit()
    finally:
        first.close()
    thread.join(30)
    assert results == ["fully_booked"]


def test_a_change_of_the_series_reaches_the_sessions_still_to_come_only(processor: EventProcessor, engine: Engine,
                                                                        kafka_bootstrap: str) -> None:
    """`PATCH /v1/series/{id}`'s rule (api.services.opportunities.edit_series) with the clock moved past session
    2's start: sessions 3 and 4 change, each published again with its series id; 1 and 2 keep what they had."""
    from api.auth import Principal, Role
    from api.broker import BrokerLink
    from api.deps import Services
    from api.errors import ApiError
    from api.services import opportunities
    from producers.kafka import ALL_TOPICS, ensure_topics, prefixed

    prefix = f"series{uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, 1, prefixed(ALL_TOPICS, prefix))
    link = BrokerLink(kafka_bootstrap, topic_prefix=prefix)
    services = Services(engine=engine, producer=link, admin_token=None)
    lido = Principal(Role.ORG, org_id="lido")
    try:
        starts = {r.id: r.starts_at for r in opportunities.series_of(services, SERIES)}
        after_second = starts[f"{SERIES}-2"] + timedelta(minutes=1)
        changed, rows = opportunities.edit_series(services, lido, SERIES, {"title": "Deep water", "capacity": 4},
                                                  now=after_second)
        assert changed == [f"{SERIES}-3", f"{SERIES}-4"]
        assert [(r.id, r.title, r.capacity, r.series_id) for r in rows] == [
            (f"{SERIES}-1", "Swim class", 2, SERIES), (f"{SERIES}-2", "Swim class", 2, SERIES),
            (f"{SERIES}-3", "Deep water", 4, SERIES), (f"{SERIES}-4", "Deep water", 4, SERIES)]
        for principal, status, code in ((Principal(Role.ORG, org_id="garden"), 403, "forbidden"),
                                        (Principal(Role.LEAD), 403, "forbidden"),
                                        (Principal(Role.VOLUNTEER, volunteer_id="ana"), 403, "forbidden")):
            with pytest.raises(ApiError) as refused:
                opportunities.edit_series(services, principal, SERIES, {"capacity": 9}, now=after_second)
            assert (refused.value.status, refused.value.code) == (status, code)
        for series, changes, now, status, code in (
                ("ser-nowhere", {"capacity": 9}, after_second, 404, "unknown_series"),
                (SERIES, {"cost": 300}, after_second, 422, "invalid_request"),
                (SERIES, {"capacity": 9}, starts[f"{SERIES}-4"], 409, "series_over")):
            with pytest.raises(ApiError) as refused:
                opportunities.edit_series(services, lido, series, changes, now=now)
            assert (refused.value.status, refused.value.code) == (status, code)
    finally:
        link.close()
    # The worker applies the published edits as upserts that keep the series (the events read back from Kafka
    # are those the API sent).
    from kafka import KafkaConsumer

    from ledger.events import decode_event

    consumer = KafkaConsumer(f"{prefix}tc.admin", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    try:
        published = [decode_event(record.value) for record in consumer]
    finally:
        consumer.close()
    assert [(e.payload.opportunity_id, e.payload.series_id) for e in published] == [  # type: ignore[union-attr]
        (f"{SERIES}-3", SERIES), (f"{SERIES}-4", SERIES)]
    assert all(o.applied for o in processor.process(published).outcomes)  # type: ignore[arg-type]
    op = schema.opportunities
    with engine.connect() as conn:
        assert conn.execute(select(op.c.series_id, op.c.title).where(op.c.id == f"{SERIES}-4")).one() == (
            SERIES, "Deep water")
