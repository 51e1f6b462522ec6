"""Failures classified in a running worker (consumers/failures.py), on the real broker and PostgreSQL.

A record that fails on any topic gets exactly one dead letter on tc.rejected, with its reason and its original
bytes, and the records around it are applied exactly once; a read-only database makes the worker wait, say so
on a gauge and in one log line, and resume; an unknown database error on one record stops its partition only.
Poison that the database itself refuses is made by a trigger in the test's own database: a real error from a
real server, raised for one chosen record.
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer
from sqlalchemy import text

from ledger.events import (
    TOPIC_ACTIVITY,
    TOPIC_ADMIN,
    TOPIC_LEDGER,
    TOPIC_REJECTED,
    CreditsGifted,
    CreditsRedeemed,
    HoursLogged,
    MembershipStarted,
    OpportunityListed,
    OrganisationRegistered,
    VolunteerRegistered,
    encode_event,
)
from tests.ledger_helpers import actor_for
from ledger.pg.processing import EventProcessor, event_status
from consumers.publishing import partition_of
from api.app import API_CONNECTION
from tests.e2e.api_stack import ApiProcess
from tests.e2e.conftest import PARTITIONS, Stack
from tests.e2e.faults import assert_ledger_verified, counter, report_recovery
from tests.e2e.stack import decided_count, ledger_summary, wait_until
from tests.e2e.test_faults import _backlog, _event_ids, _produce, _reference, _registry

pytestmark = [pytest.mark.broker, pytest.mark.integration, pytest.mark.fault]

AREA = "E09000012"
ACTOR = "test"


def _raw(payload: Any, occurred_at: datetime | None = None) -> tuple[uuid.UUID, bytes]:
    envelope, raw = encode_event(payload, actor=actor_for(payload, ACTOR), occurred_at=occurred_at)
    return envelope.event_id, raw


def _letters(stack: Stack, minimum: int, timeout: float = 90) -> list[dict[str, Any]]:
    """Every dead letter on the stack's tc.rejected, once at least `minimum` have come (or the time is up)."""
    consumer = KafkaConsumer(stack.topic(TOPIC_REJECTED), bootstrap_servers=stack.bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000)
    letters: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(letters) < minimum and time.monotonic() < deadline:
            letters.extend(json.loads(message.value) for message in consumer)
    finally:
        consumer.close()
    return letters


def _wait_decided(stack: Stack, worker: Any, event_ids: list[uuid.UUID], timeout: float, what: str) -> None:
    try:
        wait_until(lambda: decided_count(stack.engine, event_ids) == len(event_ids), timeout, what)
    except AssertionError as exc:
        pending = [str(e) for e in event_ids if event_status(stack.engine, e) is None]
        raise AssertionError(f"{exc}; pending: {pending}\n{worker.log_tail(100)}") from None


def _poison_trigger(stack: Stack, table: str, column: str, value: str, sqlstate: str) -> None:
    """Make PostgreSQL refuse a row of `table` whose `column` is `value`, with `sqlstate`."""
    with stack.engine.begin() as conn:
        conn.execute(text(f"""
            CREATE OR REPLACE FUNCTION poison_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.{column} = '{value}' THEN
                    RAISE EXCEPTION 'poisoned {table} row' USING ERRCODE = '{sqlstate}';
                END IF;
                RETURN NEW;
            END $$"""))
        conn.execute(text(f"CREATE TRIGGER poison BEFORE INSERT ON {table} FOR EACH ROW "
                          f"EXECUTE FUNCTION poison_{table}()"))


def _entry_json(volunteer: str, kind: str, occurred_at: str, postings: list[tuple[str, int]]) -> bytes:
    return json.dumps({
        "entry_id": 900_000 + uuid.uuid4().int % 100_000, "event_id": str(uuid.uuid4()), "kind": kind,
        "occurred_at": occurred_at, "volunteer_id": volunteer, "org_id": None, "opportunity_id": None,
        "related_event_id": None, "postings": [{"account": a, "amount": n} for a, n in postings],
    }).encode()


def test_poison_of_every_kind_on_every_topic_gets_one_dead_letter_and_its_partition_moves_on(stack: Stack) -> None:
    _poison_trigger(stack, "volunteers", "id", "pv-poison", "22023")      # a data exception, on tc.admin
    _poison_trigger(stack, "hours_logs", "minutes", "31", "22023")        # a data exception, on tc.activity
    worker = stack.start_worker(metrics=True)
    admin, activity, ledger = stack.topic(TOPIC_ADMIN), stack.topic(TOPIC_ACTIVITY), stack.topic(TOPIC_LEDGER)
    v0, v1 = "pv0", "pv1"
    good_admin = [
        _raw(OrganisationRegistered(org_id="pclub", name="Club", area=AREA, kinds=frozenset({"community"}),
                                    auto_approve=True)),
        _raw(OrganisationRegistered(org_id="plido", name="Lido", area=AREA, kinds=frozenset({"partner"}))),
        _raw(VolunteerRegistered(volunteer_id=v0, area=AREA, consent_stats=True)),
        _raw(VolunteerRegistered(volunteer_id=v1, area=AREA, consent_stats=True)),
    ]
    refused_admin_id, refused_admin = _raw(OpportunityListed(opportunity_id="pnowhere", partner_id="pnobody",
                                                             title="Nowhere", category="sport", cost=10, area=AREA))
    db_poison_admin_id, db_poison_admin = _raw(VolunteerRegistered(volunteer_id="pv-poison", area=AREA,
                                                                   consent_stats=True))
    late_admin_id, late_admin = _raw(VolunteerRegistered(volunteer_id="pv-late", area=AREA, consent_stats=True))
    admin_poison = {
        b"\xff\xfeadmin, not UTF-8": ("undecodable", b"pnobody"),
        b'{"event_id": "not a uuid", "type": 7}': ("invalid_envelope", b"pnobody"),
        refused_admin: (None, b"pnobody"),  # a rule's reason: the partner is unknown
        db_poison_admin: ("data_error", b"pv-poison"),
    }
    with stack.producer() as producer:
        for (_, raw), key in zip(good_admin, [b"pclub", b"plido", v0.encode(), v1.encode()]):
            producer.send_raw(admin, key, raw)
        for raw, (_, key) in admin_poison.items():
            producer.send_raw(admin, key, raw)
        producer.send_raw(admin, b"pv-late", late_admin)
    _wait_decided(stack, worker, [refused_admin_id, db_poison_admin_id], 90, "the registry's poison to be refused")

    def registered() -> list[str]:
        with stack.engine.connect() as conn:
            return sorted(conn.execute(text("SELECT id FROM volunteers UNION ALL SELECT id FROM organisations"))
                          .scalars())

    wait_until(lambda: registered() == ["pclub", "plido", "pv-late", v0, v1], 60, "the registry events around it")
    # The membership once its club is in: keyed by the volunteer, it could otherwise overtake the club's event.
    with stack.producer() as producer:
        producer.send_raw(admin, v0.encode(), _raw(MembershipStarted(membership_id=uuid.uuid4(), org_id="pclub",
                                                                     volunteer_id=v0))[1])

    def members() -> int:
        with stack.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM memberships WHERE org_id = 'pclub'")).scalar_one())

    wait_until(lambda: members() == 1, 60, "the membership to be applied")

    day = date(2026, 11, 1)
    before_id, before = _raw(HoursLogged(volunteer_id=v0, org_id="pclub", date=day, minutes=60))
    invalid_id = uuid.uuid4()
    invalid_shape = json.dumps({
        "event_id": str(invalid_id), "type": "HoursLogged", "version": 1, "occurred_at": "2026-11-02T10:00:00Z",
        "actor": ACTOR, "payload": {"volunteer_id": v0, "org_id": "pclub", "date": "2026-11-01", "minutes": -30,
                                    "activity": "x"}}).encode()
    refused_id, refused = _raw(CreditsRedeemed(volunteer_id=v0, partner_id="plido", amount=1_000_000))
    db_poison_id, db_poison = _raw(HoursLogged(volunteer_id=v0, org_id="pclub", date=day, minutes=31))
    # A moment in year 1: outside the calendar events may name (1900 to 2100, docs/design.md §4.2), dead-lettered.
    ancient_id, gift = _raw(CreditsGifted(from_volunteer_id=v0, to_volunteer_id=v1, amount=10))
    ancient = json.dumps({**json.loads(gift), "occurred_at": "0001-01-01T00:00:00Z"}).encode()
    after_id, after = _raw(HoursLogged(volunteer_id=v0, org_id="pclub", date=day, minutes=45))
    activity_poison = {
        b"\x00\xffactivity, not json": "undecodable",
        invalid_shape: "invalid_payload",
        refused: "insufficient_credits",
        db_poison: "data_error",
        ancient: "invalid_envelope",
    }
    zero_gift = _entry_json(v0, "credits_gifted", "2026-11-01T10:00:00Z", [(f"volunteer:{v0}", 0),
                                                                           (f"volunteer:{v1}", 0)])
    year_one = _entry_json(v0, "credits_redeemed", "0001-01-01T00:00:00Z", [(f"volunteer:{v0}", -10),
                                                                            ("partner:plido", 10)])
    ledger_poison = {
        b"\xc3\x28ledger, not UTF-8": "invalid_entry",
        b'{"entry_id": "seven", "postings": []}': "invalid_entry",
        zero_gift: "processing_error",   # StopIteration in the statistics' thread: a hang before
        year_one: "invalid_entry",       # outside 1900 to 2100: no London day for the statistics
    }
    with stack.producer() as producer:
        producer.send_raw(activity, v0.encode(), before)
        for raw in activity_poison:
            producer.send_raw(activity, v0.encode(), raw)
        for raw in ledger_poison:
            producer.send_raw(ledger, v0.encode(), raw)
        producer.send_raw(activity, v0.encode(), after)
    activity_ids = [before_id, invalid_id, refused_id, db_poison_id, ancient_id, after_id]
    _wait_decided(stack, worker, activity_ids, 90, "the activity events to be processed")

    # One dead letter each: on tc.admin, on tc.activity (the year-1 gift among them), on tc.ledger.
    expected = len(admin_poison) + len(activity_poison) + len(ledger_poison)
    letters = _letters(stack, expected)
    by_original: dict[bytes, list[dict[str, Any]]] = {}
    for letter in letters:
        by_original.setdefault(base64.b64decode(letter["original"]), []).append(letter)
    for poison, (reason, _) in admin_poison.items():
        [letter] = by_original.pop(poison)
        assert letter["source"]["topic"] == admin
        if reason is not None:
            assert letter["reason"] == reason, letter
    for poison, reason in activity_poison.items():
        [letter] = by_original.pop(poison)
        assert (letter["source"]["topic"], letter["reason"]) == (activity, reason), letter
    for poison, reason in ledger_poison.items():
        [letter] = by_original.pop(poison)
        assert (letter["source"]["topic"], letter["reason"]) == (ledger, reason), letter
    assert not by_original, by_original

    # The records around the poison applied, once each; the poison refused and recorded.
    for event_id in [before_id, after_id]:
        assert event_status(stack.engine, event_id).status == "applied", event_id  # type: ignore[union-attr]
    assert event_status(stack.engine, db_poison_admin_id).reason == "data_error"  # type: ignore[union-attr]
    assert event_status(stack.engine, db_poison_id).reason == "data_error"  # type: ignore[union-attr]
    assert event_status(stack.engine, refused_id).reason == "insufficient_credits"  # type: ignore[union-attr]

    def facts_for_every_entry() -> bool:
        with stack.engine.connect() as conn:
            missing = conn.execute(text(
                "SELECT count(*) FROM entries e WHERE NOT EXISTS "
                "(SELECT 1 FROM stats_facts f WHERE f.entry_id = e.id)")).scalar()
            entries = conn.execute(text("SELECT count(*) FROM entries")).scalar()
        return missing == 0 and entries == 2  # two hours approved

    wait_until(facts_for_every_entry, 60, "a fact for every entry")
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM stats_facts")).scalar() == 2  # exactly once each
        assert conn.execute(text("SELECT sum(minutes) FROM stats_facts")).scalar() == 105
    assert worker.alive, worker.log_tail()
    scraped = worker.metrics_text()
    assert counter(scraped, "timecredits_records_dead_lettered_total") >= 6
    assert "Traceback" not in worker.log_tail(400)
    assert_ledger_verified(stack.engine)


def test_a_read_only_database_makes_the_worker_wait_report_and_resume_losing_and_doubling_nothing(
    stack: Stack, embedded_postgres: str, primary_template: str
) -> None:
    EventProcessor(stack.engine).process(_registry())
    records = _backlog(3_000, seed=31)
    ids = _event_ids(records)
    worker = stack.start_worker(metrics=True)
    api = ApiProcess(stack.env(), stack.tmp / "read-only-api.log")  # its readiness follows the database's
    _produce(stack, records[:1_000])
    wait_until(lambda: decided_count(stack.engine, ids[:1_000]) == 1_000, 120, "the first part to be applied")
    api.wait_answering("/readyz", 200, timeout=60)
    database = stack.engine.url.database
    blocked = "timecredits_database_blocked"
    with stack.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'))
        # The setting holds for new sessions: end the worker's, as a failover to a standby would.
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database})
    stack.engine.dispose()
    try:
        _produce(stack, records[1_000:])
        wait_until(lambda: counter(worker.metrics_text(), blocked) >= 1, 60, "the worker to report the read-only "
                   "database")
        time.sleep(12)  # a few retries: each would have printed a traceback before
        assert decided_count(stack.engine, ids) < len(ids)
        api.wait_answering("/readyz", 503, timeout=30)  # answers, but cannot take writes: not ready
        assert httpx.get(api.url + "/readyz", timeout=10).json()["database"] is False
    finally:
        with stack.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SET SESSION default_transaction_read_only = off"))
            conn.execute(text(f'ALTER DATABASE "{database}" SET default_transaction_read_only = off'))
        stack.engine.dispose()
    writable = time.monotonic()
    wait_until(lambda: decided_count(stack.engine, ids) == len(ids), 120, "the worker to resume")
    report_recovery("PostgreSQL read-only: backlog applied after it took writes again", time.monotonic() - writable)
    wait_until(lambda: counter(worker.metrics_text(), blocked) == 0, 30, "the gauge to clear")
    try:  # the API's sessions opened while it was read-only keep that default: new ones take writes
        with stack.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d "
                              "AND application_name = :a"), {"d": database, "a": API_CONNECTION["application_name"]})
        api.wait_answering("/readyz", 200, timeout=60)
    finally:
        api.stop()
    time.sleep(2)
    assert worker.alive, worker.log_tail()
    log = worker.log_tail(2_000)
    waiting = [line for line in log.splitlines() if "ledger: database refuses writes (read_only)" in line]
    assert len(waiting) == 1, log
    assert "Traceback" not in log, log
    assert "takes writes again" in log
    assert ledger_summary(stack.engine) == _reference(embedded_postgres, primary_template, records)
    assert_ledger_verified(stack.engine)


def test_an_unknown_database_error_on_one_record_stops_its_partition_only(stack: Stack) -> None:
    # XX000 (internal_error) is nothing a record can be blamed for, nor an outage: the partition must stop.
    _poison_trigger(stack, "hours_logs", "minutes", "29", "XX000")
    EventProcessor(stack.engine).process(_registry())
    worker = stack.start_worker(metrics=True)
    stuck_volunteer = "cv000"
    stuck_id, stuck = _raw(HoursLogged(volunteer_id=stuck_volunteer, org_id="club", date=date(2026, 10, 31),
                                       minutes=29))
    behind_id, behind = _raw(HoursLogged(volunteer_id=stuck_volunteer, org_id="club", date=date(2026, 10, 31),
                                         minutes=30))
    others = [(v, _raw(HoursLogged(volunteer_id=v, org_id="club", date=date(2026, 10, 31), minutes=60)))
              for v in (f"cv{n:03d}" for n in range(1, 60))]
    with stack.producer() as producer:
        producer.send_raw(stack.topic(TOPIC_ACTIVITY), stuck_volunteer.encode(), stuck)
        producer.send_raw(stack.topic(TOPIC_ACTIVITY), stuck_volunteer.encode(), behind)
        for volunteer, (_, raw) in others:
            producer.send_raw(stack.topic(TOPIC_ACTIVITY), volunteer.encode(), raw)
    partitions = list(range(PARTITIONS))
    stopped = partition_of(stuck_volunteer.encode(), partitions)
    held = [event_id for v, (event_id, _) in others if partition_of(v.encode(), partitions) == stopped]
    free = [event_id for v, (event_id, _) in others if partition_of(v.encode(), partitions) != stopped]
    assert free, "some volunteers are on other partitions"
    wait_until(lambda: decided_count(stack.engine, free) == len(free), 90, "the other partitions to be applied")
    gauge = "timecredits_partition_stopped"
    wait_until(lambda: counter(worker.metrics_text(), gauge) == 1, 90, "the partition to be stopped")
    time.sleep(3)
    assert decided_count(stack.engine, [stuck_id, behind_id, *held]) == 0, "nothing behind the stop was applied"
    assert worker.alive, worker.log_tail()
    log = worker.log_tail(400)
    assert f"partition {stack.topic(TOPIC_ACTIVITY)}[{stopped}] stopped at offset" in log, log
    assert sum("stopped at offset" in line for line in log.splitlines()) == 1, log

    # Once the cause is gone, a restarted worker takes the partition up where it stopped: nothing lost.
    with stack.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER poison ON hours_logs"))
    assert worker.stop() == 0, worker.log_tail()
    stack.start_worker()
    everything = [stuck_id, behind_id, *held, *free]
    wait_until(lambda: decided_count(stack.engine, everything) == len(everything), 120, "the partition to resume")
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hours_logs")).scalar() == len(everything)


@pytest.mark.parametrize("poison", ["zero_amount_gift", "year_one"])
def test_the_statistics_consumer_dead_letters_an_entry_it_cannot_place_and_goes_on(stack: Stack, poison: str) -> None:
    """Two entries that made the statistics fail: a gift posting of zero (StopIteration in its thread, which can
    not cross into a future: the consumer hung) and a moment in year 1 (no London calendar day: the worker exited
    and replayed the same batch for ever). Each is dead-lettered; the entries around it make their facts."""
    worker = stack.start_worker(metrics=True, only="statistics")
    volunteer = "sv0"
    bad = {
        "zero_amount_gift": _entry_json(volunteer, "credits_gifted", "2026-11-01T10:00:00Z",
                                        [(f"volunteer:{volunteer}", 0), ("volunteer:sv1", 0)]),
        "year_one": _entry_json(volunteer, "credits_redeemed", "0001-01-01T00:00:00Z",
                                [(f"volunteer:{volunteer}", -10), ("partner:slido", 10)]),
    }[poison]
    good = [_entry_json(volunteer, "credits_redeemed", f"2026-11-0{n}T10:00:00Z",
                        [(f"volunteer:{volunteer}", -10 * n), ("partner:slido", 10 * n)]) for n in (1, 2)]
    with stack.producer() as producer:
        for raw in (good[0], bad, good[1]):
            producer.send_raw(stack.topic(TOPIC_LEDGER), volunteer.encode(), raw)
    good_ids = [json.loads(raw)["entry_id"] for raw in good]

    def facts() -> list[int]:
        with stack.engine.connect() as conn:
            return sorted(conn.execute(text("SELECT entry_id FROM stats_facts")).scalars())

    try:
        wait_until(lambda: facts() == sorted(good_ids), 60, "the facts of the entries around the poison")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; alive: {worker.alive}\n{worker.log_tail(60)}") from None
    [letter] = _letters(stack, 1)
    assert base64.b64decode(letter["original"]) == bad
    assert letter["reason"] == {"zero_amount_gift": "processing_error", "year_one": "invalid_entry"}[poison]
    assert letter["source"]["topic"] == stack.topic(TOPIC_LEDGER)
    assert letter["event_id"] == json.loads(bad)["event_id"]
    time.sleep(2)
    assert worker.alive, worker.log_tail()
    assert facts() == sorted(good_ids)  # once each
