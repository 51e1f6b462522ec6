"""Events through a real broker and a real `timecredits worker` process into PostgreSQL."""
from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import date

import pytest
from kafka import KafkaConsumer
from sqlalchemy import text

from ledger.actors import volunteer_actor
from ledger.events import (
    TOPIC_ACTIVITY,
    TOPIC_LEDGER,
    TOPIC_REJECTED,
    BookingAttended,
    CreditsGifted,
    CreditsRedeemed,
    EntryCommitted,
    HoursApproved,
    HoursLogged,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    VolunteerRegistered,
    encode_event,
)
from ledger.pg.processing import event_status
from ledger.pg.repository import LedgerRepository
from ledger.pg.verify import verify_ledger
from tests.e2e.conftest import Stack
from tests.e2e.stack import decided_count, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.integration]

AREA = "E09000012"
ACTOR = "test"


def _register(stack: Stack, tag: str, volunteers: int) -> list[str]:
    """Organisations, volunteers and an opportunity through tc.admin; returns the volunteer ids."""
    ids = [f"{tag}-v{n}" for n in range(volunteers)]
    with stack.producer() as producer:
        producer.publish(OrganisationRegistered(org_id=f"{tag}-club", name="Club", area=AREA, kinds=frozenset({"community"})), actor=ACTOR)
        producer.publish(OrganisationRegistered(org_id=f"{tag}-lido", name="Lido", area=AREA, kinds=frozenset({"partner"})), actor=ACTOR)
        producer.publish(OpportunityListed(opportunity_id=f"{tag}-swim", partner_id=f"{tag}-lido", title="Swim",
                                           category="sport", cost=100, area=AREA), actor=ACTOR)
        for volunteer in ids:
            producer.publish(VolunteerRegistered(volunteer_id=volunteer, area=AREA, consent_stats=True), actor=ACTOR)

    def registered() -> bool:
        with stack.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM volunteers WHERE id LIKE :t || '-%'"), {"t": tag}).scalar() == volunteers and \
                conn.execute(text("SELECT count(*) FROM opportunities WHERE id = :o"), {"o": f"{tag}-swim"}).scalar() == 1 and \
                conn.execute(text("SELECT count(*) FROM organisations WHERE id = :c"), {"c": f"{tag}-club"}).scalar() == 1

    wait_until(registered, 90, "the registry events to be applied")
    # Memberships once the club is in: keyed by the volunteer, one could otherwise overtake the club's event.
    with stack.producer() as producer:
        for volunteer in ids:
            producer.publish(MembershipStarted(membership_id=uuid.uuid4(), org_id=f"{tag}-club", volunteer_id=volunteer),
                             actor=ACTOR)

    def members() -> bool:
        with stack.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM memberships WHERE org_id = :c"), {"c": f"{tag}-club"}).scalar() == volunteers

    wait_until(members, 90, "the memberships to be applied")
    return ids


def _wait_decided(stack: Stack, event_ids: list[uuid.UUID], timeout: float = 90) -> None:
    wait_until(lambda: decided_count(stack.engine, event_ids) == len(event_ids), timeout,
               f"{len(event_ids)} events to be processed")


def _consume(stack: Stack, topic: str, minimum: int, timeout_s: float = 30) -> list[bytes]:
    consumer = KafkaConsumer(stack.topic(topic), bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000, group_id=None)
    values: list[bytes] = []
    try:
        wait_until(lambda: values.extend(m.value for m in consumer) or len(values) >= minimum, timeout_s,
                   f"{minimum} messages on {topic}", interval=0)
    finally:
        consumer.close()
    return values


def test_hours_booking_attendance_redemption_and_gift_end_to_end(shared_stack: Stack) -> None:
    stack = shared_stack
    ana, ben = _register(stack, "flow", 2)
    with stack.producer() as producer:
        logged = producer.publish(HoursLogged(volunteer_id=ana, org_id="flow-club", date=date(2026, 11, 1),
                                              minutes=300, activity="Food bank"), actor=ACTOR)
        approved = producer.publish(HoursApproved(log_event_id=logged.event_id, volunteer_id=ana, org_id="flow-club"), actor=ACTOR)
        booked = producer.publish(OpportunityBooked(volunteer_id=ana, opportunity_id="flow-swim", partner_id="flow-lido", amount=100), actor=volunteer_actor(ana))
        attended = producer.publish(BookingAttended(booking_event_id=booked.event_id, volunteer_id=ana), actor=ACTOR)
        redeemed = producer.publish(CreditsRedeemed(volunteer_id=ana, partner_id="flow-lido", amount=50), actor=volunteer_actor(ana))
        gifted = producer.publish(CreditsGifted(from_volunteer_id=ana, to_volunteer_id=ben, amount=75), actor=volunteer_actor(ana))
    ids = [e.event_id for e in (logged, approved, booked, attended, redeemed, gifted)]
    _wait_decided(stack, ids)

    statuses = [event_status(stack.engine, i) for i in ids]
    assert all(s is not None and s.status == "applied" for s in statuses), statuses
    repository = LedgerRepository(stack.engine)
    assert repository.volunteer_balance(ana).available == 500 - 100 - 50 - 75
    assert repository.volunteer_balance(ben).available == 75
    assert repository.balance("partner:flow-lido") == 150

    published = [EntryCommitted.model_validate_json(v) for v in _consume(stack, TOPIC_LEDGER, 5)]
    assert {p.event_id for p in published} >= {approved.event_id, booked.event_id, attended.event_id,
                                                redeemed.event_id, gifted.event_id}
    assert verify_ledger(stack.engine).ok


def test_the_same_event_produced_three_times_makes_one_entry(shared_stack: Stack) -> None:
    stack = shared_stack
    [vera] = _register(stack, "dup", 1)
    with stack.producer() as producer:
        logged = producer.publish(HoursLogged(volunteer_id=vera, org_id="dup-club", date=date(2026, 11, 1),
                                              minutes=60, activity="Litter pick"), actor=ACTOR)
        approval = HoursApproved(log_event_id=logged.event_id, volunteer_id=vera, org_id="dup-club")
        first = producer.publish(approval, actor=ACTOR)
        for _ in range(2):
            producer.send_envelope(first)
    _wait_decided(stack, [logged.event_id, first.event_id])
    with stack.engine.connect() as conn:
        entries = conn.execute(text("SELECT count(*) FROM entries WHERE volunteer_id = :v"), {"v": vera}).scalar()
    assert entries == 1
    assert LedgerRepository(stack.engine).volunteer_balance(vera).available == 100


def test_poison_lands_in_the_dead_letter_topic_and_the_events_around_it_apply(shared_stack: Stack) -> None:
    stack = shared_stack
    [pia] = _register(stack, "poison", 1)
    bad_payload_id = uuid.uuid4()
    _, unknown_type = encode_event(CreditsRedeemed(volunteer_id=pia, partner_id="poison-lido", amount=1), actor=ACTOR)
    unknown_type = unknown_type.replace(b'"CreditsRedeemed"', b'"CreditsStolen"')
    invalid_payload = json.dumps({
        "event_id": str(bad_payload_id), "type": "HoursLogged", "version": 1, "occurred_at": "2026-11-02T10:00:00Z",
        "actor": ACTOR, "payload": {"volunteer_id": pia, "org_id": "poison-club", "date": "2026-11-01",
                                    "minutes": -30, "activity": "x"},
    }).encode()
    with stack.producer() as producer:
        before = producer.publish(HoursLogged(volunteer_id=pia, org_id="poison-club", date=date(2026, 11, 1),
                                              minutes=60, activity="x"), actor=ACTOR)
        for raw in (b"\x00\xffnot json at all", unknown_type, invalid_payload):
            producer.send_raw(stack.topic(TOPIC_ACTIVITY), pia.encode(), raw)
        after = producer.publish(HoursLogged(volunteer_id=pia, org_id="poison-club", date=date(2026, 11, 2),
                                             minutes=30, activity="y"), actor=ACTOR)
    _wait_decided(stack, [before.event_id, after.event_id, bad_payload_id])

    letters = [json.loads(v) for v in _consume(stack, TOPIC_REJECTED, 3)]
    mine = [letter for letter in letters if pia.encode() in base64.b64decode(letter["original"])
            or base64.b64decode(letter["original"]) == b"\x00\xffnot json at all"]
    assert sorted(letter["reason"] for letter in mine) == ["invalid_payload", "undecodable", "unknown_type"]
    assert all(letter["source"]["topic"] == stack.topic(TOPIC_ACTIVITY) and letter["rejected_at"] for letter in mine)
    assert event_status(stack.engine, bad_payload_id).reason == "invalid_payload"  # type: ignore[union-attr]
    assert event_status(stack.engine, before.event_id).status == "applied"  # type: ignore[union-attr]
    assert event_status(stack.engine, after.event_id).status == "applied"  # type: ignore[union-attr]


def test_a_spend_produced_after_the_approval_that_funds_it_is_applied_after_it(shared_stack: Stack) -> None:
    stack = shared_stack
    volunteers = _register(stack, "order", 40)
    with stack.engine.begin() as conn:
        conn.execute(text("UPDATE organisations SET auto_approve = true WHERE id = 'order-club'"))
    ids = []
    with stack.producer() as producer:
        for round_ in range(5):
            for volunteer in volunteers:
                logged = producer.publish(HoursLogged(volunteer_id=volunteer, org_id="order-club",
                                                      date=date(2026, 11, 1), minutes=60, activity=f"r{round_}"), actor=ACTOR)
                spent = producer.publish(CreditsRedeemed(volunteer_id=volunteer, partner_id="order-lido", amount=100),
                                         actor=volunteer_actor(volunteer))
                ids += [logged.event_id, spent.event_id]
    _wait_decided(stack, ids)
    with stack.engine.connect() as conn:
        refused = conn.execute(text("SELECT count(*) FROM rejections WHERE event_id = ANY(CAST(:ids AS uuid[]))"),
                               {"ids": [str(i) for i in ids]}).scalar()
    assert refused == 0, "every spend found the credits of the approval produced before it"
    assert LedgerRepository(stack.engine).balance("partner:order-lido") == 100 * 5 * 40


def test_the_statistics_agent_records_a_fact_for_every_committed_entry(shared_stack: Stack) -> None:
    """The worker's agent on tc.ledger: facts follow the ledger, each entry once, whatever was redelivered."""
    stack = shared_stack
    [sam] = _register(stack, "stats", 1)
    with stack.producer() as producer:
        logged = producer.publish(HoursLogged(volunteer_id=sam, org_id="stats-club", date=date(2026, 11, 1),
                                              minutes=45, activity="Reading"), actor=ACTOR)
        approved = producer.publish(HoursApproved(log_event_id=logged.event_id, volunteer_id=sam, org_id="stats-club"),
                                    actor=ACTOR)
    _wait_decided(stack, [logged.event_id, approved.event_id])

    def facts_match_entries() -> bool:
        with stack.engine.connect() as conn:
            facts, entries, missing = conn.execute(text(
                "SELECT (SELECT count(*) FROM stats_facts), (SELECT count(*) FROM entries), "
                "(SELECT count(*) FROM entries e WHERE NOT EXISTS (SELECT 1 FROM stats_facts f WHERE f.entry_id = e.id))"
            )).one()
        return entries > 0 and facts == entries and missing == 0

    wait_until(facts_match_entries, 60, "a statistics fact for every entry")
    with stack.engine.connect() as conn:
        minutes = conn.execute(text("SELECT minutes FROM stats_facts WHERE volunteer_id = :v"), {"v": sam}).scalar()
    assert minutes == 45


def test_the_statistics_run_in_a_process_of_their_own_with_only(stack: Stack) -> None:
    """`worker --only ledger` applies events and publishes tc.ledger but records no statistics; a second process,
    `worker --only statistics`, records a fact for every entry."""
    stack.start_worker(only="ledger")
    [ada] = _register(stack, "apart", 1)
    with stack.producer() as producer:
        logged = producer.publish(HoursLogged(volunteer_id=ada, org_id="apart-club", date=date(2026, 11, 1),
                                              minutes=90, activity="Gardening"), actor=ACTOR)
        approved = producer.publish(HoursApproved(log_event_id=logged.event_id, volunteer_id=ada,
                                                  org_id="apart-club"), actor=ACTOR)
    _wait_decided(stack, [logged.event_id, approved.event_id])
    published = [EntryCommitted.model_validate_json(v) for v in _consume(stack, TOPIC_LEDGER, 1)]
    assert [entry.kind for entry in published] == ["hours_approved"]

    def facts() -> int:
        with stack.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM stats_facts")).scalar_one())

    # A worker running both consumers records the fact within about a second of publishing the entry (its
    # statistics consumer waits at most 500 ms at the broker); give it three before saying none came.
    time.sleep(3)
    assert facts() == 0, "the ledger-only worker recorded statistics"
    stack.start_worker(only="statistics")
    wait_until(lambda: facts() == 1, 60, "the statistics process to record the entry")
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT minutes FROM stats_facts")).scalar_one() == 90
