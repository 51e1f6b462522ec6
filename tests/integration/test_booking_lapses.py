"""Holds that lapse, and no-shows (docs/design.md §5.11), on real PostgreSQL and a real broker.

The hold-release job produces its events to the broker; the test reads them back from the topic and applies them
through the worker's own batch pipeline, as the ledger worker does. The clock is a parameter: nothing sleeps.
Attacks on the new rules are raw SQL that bypasses the pipeline, as in test_ledger_invariants.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ledger.actors import HOLD_RELEASE_ACTOR, admin_actor, org_actor
from ledger.domain import BookOpportunity, CancelBooking, EarnCredits, MarkNoShow, Posting, ReverseEntry
from ledger.events import (
    TOPIC_ACTIVITY,
    BookingAttended,
    BookingExpired,
    BookingNoShow,
    DecodedEvent,
    HoursLogged,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    VolunteerRegistered,
    check_key,
    decode_event,
)
from ledger.pg.processing import EventProcessor
from producers.kafka import ALL_TOPICS, EventProducer, ensure_topics, prefixed
from tests.integration.test_processing import AREA, WHEN, ev
from tests.ledger_helpers import NOW, LedgerDriver, as_event, available_and_held, balance, insert_raw_entry, new_id
from timecredits.expiry import expire_holds, expiry_event_id

pytestmark = [pytest.mark.broker, pytest.mark.integration]

#: The dated class starts a day after the bookings are made.
STARTS = WHEN + timedelta(days=1)
HOLD = timedelta(hours=72)


@pytest.fixture()
def prefix(kafka_bootstrap: str) -> str:
    """Topics of the test's own: everything on them is what this test produced."""
    prefix = f"lapse-{uuid.uuid4().hex[:8]}-"
    ensure_topics(kafka_bootstrap, 2, prefixed(ALL_TOPICS, prefix))
    return prefix


@pytest.fixture()
def producer(kafka_bootstrap: str, prefix: str) -> Iterator[EventProducer]:
    with EventProducer(kafka_bootstrap, topic_prefix=prefix) as producer:
        yield producer


class Topic:
    """The activity topic read from its start, a record at a time, as the ledger worker reads it."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        topic = prefix + TOPIC_ACTIVITY
        partitions = [TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic))]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)

    def take(self, count: int, timeout: float = 20.0) -> list[DecodedEvent]:
        """The next `count` records, decoded and checked for their key as the worker does; no more arrive."""
        taken: list[DecodedEvent] = []
        deadline = time.monotonic() + timeout
        while len(taken) < count and time.monotonic() < deadline:
            for batch in self._consumer.poll(timeout_ms=200).values():
                for record in batch:
                    item = check_key(decode_event(record.value), record.key)
                    assert isinstance(item, DecodedEvent), item
                    taken.append(item)
        assert len(taken) == count, f"{len(taken)} records arrived, not {count}"
        assert not any(self._consumer.poll(timeout_ms=300).values()), "more records than expected"
        return taken

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture()
def topic(kafka_bootstrap: str, prefix: str) -> Iterator[Topic]:
    topic = Topic(kafka_bootstrap, prefix)
    yield topic
    topic.close()


@pytest.fixture()
def processor(engine: Engine) -> EventProcessor:
    """ana and ben with 5.00 credits each; at the lido an undated swim and a class with one place the next day."""
    processor = EventProcessor(engine)
    setup = [
        ev(OrganisationRegistered(org_id="garden", name="Garden", area=AREA, kinds=frozenset({"community"}),
                                  auto_approve=True)),
        ev(OrganisationRegistered(org_id="lido", name="Lido", area=AREA, kinds=frozenset({"partner"}))),
        ev(OrganisationRegistered(org_id="arts", name="Arts", area=AREA, kinds=frozenset({"partner"}))),
        *[ev(VolunteerRegistered(volunteer_id=v, area=AREA, consent_stats=False)) for v in ("ana", "ben")],
        *[ev(MembershipStarted(membership_id=uuid4(), org_id="garden", volunteer_id=v)) for v in ("ana", "ben")],
        ev(OpportunityListed(opportunity_id="swim", partner_id="lido", title="Swim", category="sport", cost=100,
                             area=AREA)),
        ev(OpportunityListed(opportunity_id="class", partner_id="lido", title="Swim class", category="sport",
                             cost=100, capacity=1, area=AREA, starts_at=STARTS)),
        *[ev(HoursLogged(volunteer_id=v, org_id="garden", date=date(2026, 11, 1), minutes=300))
          for v in ("ana", "ben")],
    ]
    assert all(o.applied for o in processor.process(setup).outcomes)
    return processor


def book(volunteer: str, opportunity: str) -> DecodedEvent:
    return ev(OpportunityBooked(volunteer_id=volunteer, opportunity_id=opportunity, partner_id="lido", amount=100))


def kinds(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT kind FROM entries WHERE related_entry_id IS NOT NULL ORDER BY id"))
                    .scalars())


# --- holds that lapse --------------------------------------------------------------------------------------------


def test_a_hold_is_released_once_its_deadline_has_passed_and_not_before(
        processor: EventProcessor, engine: Engine, producer: EventProducer, topic: Topic) -> None:
    booked = book("ana", "class")
    assert processor.process([booked]).outcomes[0].applied
    assert available_and_held(engine, "ana") == (400, 100)

    deadline = STARTS + HOLD  # 72 hours after the class starts, not after the booking
    assert expire_holds(engine, producer, deadline - timedelta(hours=50)) == 0
    assert expire_holds(engine, producer, deadline) == 0  # within the 72 hours still
    assert expire_holds(engine, producer, deadline + timedelta(seconds=1)) == 1
    [expired] = topic.take(1)
    assert isinstance(expired.payload, BookingExpired)
    assert (expired.event_id, expired.envelope.actor) == (expiry_event_id(booked.event_id), HOLD_RELEASE_ACTOR)
    assert expired.payload.booking_event_id == booked.event_id
    assert expired.envelope.occurred_at == deadline + timedelta(seconds=1)

    [outcome] = processor.process([expired]).outcomes
    assert outcome.applied and outcome.entry_id is not None
    assert available_and_held(engine, "ana") == (500, 0)
    assert kinds(engine) == ["booking_expired"]
    assert expire_holds(engine, producer, deadline + timedelta(days=30)) == 0  # settled: nothing more to release


def test_a_booking_of_an_opportunity_with_no_date_lapses_after_the_booking_itself(
        processor: EventProcessor, engine: Engine, producer: EventProducer, topic: Topic) -> None:
    assert processor.process([book("ana", "swim")]).outcomes[0].applied
    assert expire_holds(engine, producer, WHEN + HOLD) == 0
    assert expire_holds(engine, producer, WHEN + HOLD + timedelta(minutes=1), hold_hours=72) == 1
    assert all(o.applied for o in processor.process(topic.take(1)).outcomes)
    assert available_and_held(engine, "ana") == (500, 0)


def test_the_job_run_twice_or_by_two_schedulers_doubles_nothing(
        processor: EventProcessor, engine: Engine, producer: EventProducer, topic: Topic) -> None:
    assert all(o.applied for o in processor.process([book("ana", "swim"), book("ben", "swim")]).outcomes)
    later = WHEN + HOLD + timedelta(hours=1)
    # Two runs before the worker applies either: the same two events twice, by their derived ids.
    assert expire_holds(engine, producer, later) == 2
    assert expire_holds(engine, producer, later + timedelta(minutes=5)) == 2
    produced = topic.take(4)
    assert len({item.event_id for item in produced}) == 2
    outcomes = processor.process(produced).outcomes
    assert [o.applied for o in outcomes] == [True] * 4
    assert sorted(o.duplicate for o in outcomes) == [False, False, True, True]
    assert kinds(engine) == ["booking_expired", "booking_expired"]
    assert available_and_held(engine, "ana") == available_and_held(engine, "ben") == (500, 0)
    # Delivered again after a crash: still nothing more.
    assert all(o.duplicate for o in processor.process(produced).outcomes)
    assert available_and_held(engine, "ana") == (500, 0)


def test_the_place_a_lapsed_booking_held_can_be_booked(
        processor: EventProcessor, engine: Engine, producer: EventProducer, topic: Topic) -> None:
    assert processor.process([book("ana", "class")]).outcomes[0].applied
    assert processor.process([book("ben", "class")]).outcomes[0].reason == "fully_booked"
    assert expire_holds(engine, producer, STARTS + HOLD + timedelta(seconds=1)) == 1
    [expired] = topic.take(1)
    # In one batch: the release frees the place for the booking after it, and the one after that finds it taken.
    outcomes = processor.process([book("ben", "class"), expired, book("ben", "class"), book("ana", "class")]).outcomes
    assert [o.reason for o in outcomes] == ["fully_booked", None, None, "fully_booked"]
    assert available_and_held(engine, "ben") == (400, 100)


def test_only_the_hold_release_job_expires_a_booking(processor: EventProcessor, engine: Engine) -> None:
    booked = book("ana", "swim")
    assert processor.process([booked]).outcomes[0].applied
    payload = BookingExpired(booking_event_id=booked.event_id, volunteer_id="ana")
    for actor in ("volunteer:ana", org_actor("lido"), admin_actor(None), "test"):
        [outcome] = processor.process([as_event(payload, actor=actor)]).outcomes
        assert (outcome.status, outcome.reason) == ("rejected", "authorisation_required"), actor
    assert available_and_held(engine, "ana") == (400, 100)


def _expire_holds_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "TIMECREDITS_", "KAFKA_"))}
    return subprocess.run([sys.executable, "-m", "timecredits.cli", "expire-holds"],
                          env={**clean, "COLUMNS": "300", **env}, capture_output=True, text=True, timeout=120)


def test_timecredits_expire_holds_runs_the_job_once_on_the_configured_services(
        processor: EventProcessor, engine: Engine, database_url: str, kafka_bootstrap: str, prefix: str,
        topic: Topic, tmp_path: Path) -> None:
    """The command runs at the real time, weeks after these bookings of November 2026 were made."""
    assert all(o.applied for o in processor.process([book("ana", "swim"), book("ben", "class")]).outcomes)
    env = {"DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "TIMECREDITS_TOPIC_PREFIX": prefix, "TIMECREDITS_DATA_DIR": str(tmp_path / "data")}
    ran = _expire_holds_cli(env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "2 bookings not attended within 72 hours of their session released" in ran.stdout, ran.stdout
    assert all(o.applied for o in processor.process(topic.take(2)).outcomes)
    assert available_and_held(engine, "ana") == available_and_held(engine, "ben") == (500, 0)
    assert "0 bookings" in _expire_holds_cli(env).stdout

    # No broker configured and no `timecredits up` running on the data dir: it says so and exits 2.
    alone = _expire_holds_cli({"DATABASE_URL": database_url, "TIMECREDITS_DATA_DIR": str(tmp_path / "data")})
    assert alone.returncode == 2 and "No broker to send the releases to" in alone.stdout, alone.stdout


# --- no-shows ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("forfeit", "volunteer_gets", "partner_gets"), [(False, 100, 0), (True, 0, 100)],
                         ids=["costs-nothing", "costs-the-booking"])
def test_a_no_show_settles_the_booking_as_the_programme_says(
        processor: EventProcessor, engine: Engine, forfeit: bool, volunteer_gets: int, partner_gets: int) -> None:
    booked = book("ana", "class")
    assert processor.process([booked]).outcomes[0].applied
    missed = as_event(BookingNoShow(booking_event_id=booked.event_id, volunteer_id="ana", forfeit=forfeit),
                      actor=org_actor("lido"))
    [outcome] = processor.process([missed, book("ben", "class")]).outcomes[:1]
    assert outcome.applied
    assert available_and_held(engine, "ana") == (400 + volunteer_gets, 0)
    assert balance(engine, "partner:lido") == partner_gets
    assert kinds(engine) == ["booking_no_show"]
    assert available_and_held(engine, "ben") == (400, 100)  # the place was free again for the booking after it


def test_a_no_show_is_the_partners_word_or_an_admins(processor: EventProcessor, engine: Engine) -> None:
    booked = book("ana", "swim")
    assert processor.process([booked]).outcomes[0].applied
    payload = BookingNoShow(booking_event_id=booked.event_id, volunteer_id="ana", forfeit=True)
    for actor, reason in (("volunteer:ana", "authorisation_required"), ("lead:t1", "authorisation_required"),
                          (org_actor("arts"), "wrong_partner")):
        [outcome] = processor.process([as_event(payload, actor=actor)]).outcomes
        assert (outcome.status, outcome.reason) == ("rejected", reason), actor
    assert available_and_held(engine, "ana") == (400, 100)
    [outcome] = processor.process([as_event(payload, actor=admin_actor("t-admin"))]).outcomes
    assert outcome.applied
    assert balance(engine, "partner:lido") == 100


def test_a_booking_is_settled_once_whichever_way_comes_first(
        processor: EventProcessor, engine: Engine, producer: EventProducer, topic: Topic) -> None:
    first, second = book("ana", "swim"), book("ben", "swim")
    assert all(o.applied for o in processor.process([first, second]).outcomes)
    lido = org_actor("lido")
    outcomes = processor.process([
        as_event(BookingNoShow(booking_event_id=first.event_id, volunteer_id="ana", forfeit=False), actor=lido),
        as_event(BookingNoShow(booking_event_id=first.event_id, volunteer_id="ana", forfeit=True), actor=lido),
        ev(BookingAttended(booking_event_id=first.event_id, volunteer_id="ana")),
        ev(BookingAttended(booking_event_id=second.event_id, volunteer_id="ben")),
        as_event(BookingNoShow(booking_event_id=second.event_id, volunteer_id="ben", forfeit=False), actor=lido),
    ]).outcomes
    assert [o.reason for o in outcomes] == [None, "booking_closed", "booking_closed", None, "booking_closed"]
    # The job leaves settled bookings alone; a release produced anyway (a race) is refused by the worker.
    assert expire_holds(engine, producer, WHEN + HOLD * 10) == 0
    late = as_event(BookingExpired(booking_event_id=second.event_id, volunteer_id="ben"), actor=HOLD_RELEASE_ACTOR)
    assert processor.process([late]).outcomes[0].reason == "booking_closed"
    assert available_and_held(engine, "ana") == (500, 0)
    assert available_and_held(engine, "ben") == (400, 0)
    assert balance(engine, "partner:lido") == 100


def test_a_lapse_or_a_no_show_cannot_be_reversed(engine: Engine) -> None:
    driver = LedgerDriver(engine)
    booking = BookOpportunity(new_id(), NOW, "v1", "p1", 200, "swim")
    missed = MarkNoShow(new_id(), NOW, booking.event_id, forfeit=True, partner_id="p1")
    outcomes = driver.apply([EarnCredits(new_id(), NOW, "v1", "org1", 500), booking, missed,
                             ReverseEntry(new_id(), NOW, missed.event_id),
                             ReverseEntry(new_id(), NOW, booking.event_id)])
    assert [o.reason for o in outcomes] == [None, None, None, "not_reversible", "booking_closed"]
    assert balance(engine, "partner:p1") == 200


# --- what PostgreSQL enforces, whoever writes -------------------------------------------------------------------


def _sqlstate(error: DBAPIError) -> str:
    return error.orig.pgcode  # type: ignore[union-attr]


def _booked_and_settled(engine: Engine) -> tuple[int, int, int]:
    """Entry ids of an open booking, a booking cancelled, and an hours approval, written by the pipeline."""
    driver = LedgerDriver(engine)
    earn = EarnCredits(new_id(), NOW, "v1", "org1", 500)
    open_booking = BookOpportunity(new_id(), NOW, "v1", "p1", 100, "swim")
    closed_booking = BookOpportunity(new_id(), NOW, "v1", "p1", 100, "swim")
    outcomes = driver.apply([earn, open_booking, closed_booking, CancelBooking(new_id(), NOW, closed_booking.event_id)])
    assert all(o.applied for o in outcomes), outcomes
    return outcomes[1].entry_id, outcomes[2].entry_id, outcomes[0].entry_id  # type: ignore[return-value]


@pytest.mark.parametrize("kind", ["booking_expired", "booking_no_show"])
def test_database_refuses_a_second_settlement_of_a_booking(engine: Engine, kind: str) -> None:
    _, settled, _ = _booked_and_settled(engine)
    with pytest.raises(DBAPIError, match="entries_related_once") as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("holds:v1", -100), Posting("volunteer:v1", 100)], kind=kind,
                             related_entry_id=settled)
    assert _sqlstate(caught.value) == "23505"
    assert available_and_held(engine, "v1") == (400, 100)


@pytest.mark.parametrize("kind", ["booking_expired", "booking_no_show"])
def test_database_refuses_a_lapse_or_no_show_of_something_that_is_not_a_booking(engine: Engine, kind: str) -> None:
    _, _, approval = _booked_and_settled(engine)
    with pytest.raises(DBAPIError, match="not_a_booking") as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("volunteer:v1", -100), Posting("partner:p1", 100)], kind=kind,
                             related_entry_id=approval)
    assert _sqlstate(caught.value) == "23514"


@pytest.mark.parametrize("kind", ["booking_expired", "booking_no_show"])
def test_database_refuses_a_lapse_or_no_show_that_names_no_booking(engine: Engine, kind: str) -> None:
    _booked_and_settled(engine)
    with pytest.raises(DBAPIError, match="related_entry_required") as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("holds:v1", -100), Posting("volunteer:v1", 100)], kind=kind)
    assert _sqlstate(caught.value) == "23514"


def test_database_refuses_a_reversal_of_a_lapse_or_a_no_show(engine: Engine) -> None:
    booking, _, _ = _booked_and_settled(engine)
    with engine.begin() as conn:  # an honest lapse, written by hand: allowed
        lapse = insert_raw_entry(conn, [Posting("holds:v1", -100), Posting("volunteer:v1", 100)],
                                 kind="booking_expired", related_entry_id=booking)
    assert available_and_held(engine, "v1") == (500, 0)
    with pytest.raises(DBAPIError, match="bad_reversal") as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("holds:v1", 100), Posting("volunteer:v1", -100)], kind="entry_reversed",
                             related_entry_id=lapse)
    assert _sqlstate(caught.value) == "23514"


def test_database_refuses_an_entry_kind_it_does_not_know(engine: Engine) -> None:
    booking, _, _ = _booked_and_settled(engine)
    with pytest.raises(DBAPIError, match="entries_kind_check") as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("holds:v1", -100), Posting("volunteer:v1", 100)],
                             kind="booking_forgiven", related_entry_id=booking)
    assert _sqlstate(caught.value) == "23514"
