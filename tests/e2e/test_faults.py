"""Crashes and hand-overs: a killed worker and a stopped group member lose and duplicate nothing."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import pytest
from sqlalchemy import Engine, create_engine, text

from ledger.events import (
    TOPIC_ACTIVITY,
    BookingAttended,
    CreditsRedeemed,
    DecodedEvent,
    HoursLogged,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    VolunteerRegistered,
    decode_event,
    encode_event,
)
from tests.ledger_helpers import actor_for
from ledger.pg.processing import BatchResult, EventProcessor
from tests.e2e.conftest import Stack
from tests.e2e.stack import decided_count, ledger_summary, wait_until
from tests.postgres import fresh_database

T = TypeVar("T")

pytestmark = [pytest.mark.broker, pytest.mark.integration]

AREA = "E09000025"
VOLUNTEERS = [f"cv{n:03d}" for n in range(120)]


def _registry() -> list[DecodedEvent]:
    payloads = [
        OrganisationRegistered(org_id="club", name="Club", area=AREA, kinds=frozenset({"community"}), auto_approve=True),
        OrganisationRegistered(org_id="lido", name="Lido", area=AREA, kinds=frozenset({"partner"})),
        OpportunityListed(opportunity_id="swim", partner_id="lido", title="Swim", category="sport", cost=150, area=AREA),
        *(VolunteerRegistered(volunteer_id=v, area=AREA, consent_stats=True) for v in VOLUNTEERS),
        *(MembershipStarted(membership_id=uuid.uuid4(), org_id="club", volunteer_id=v) for v in VOLUNTEERS),
    ]
    return [decode_event(encode_event(p, actor=actor_for(p))[1]) for p in payloads]  # type: ignore[misc]


def _backlog(count: int, seed: int = 11) -> list[tuple[bytes, bytes]]:
    """(key, bytes) of activity events whose outcomes depend only on each volunteer's own order.

    Hours earn at once (the club auto-approves); redemptions sometimes overdraw and are refused;
    a booking is attended right after it is made.
    """
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    records: list[tuple[bytes, bytes]] = []
    while len(records) < count:
        volunteer = rng.choice(VOLUNTEERS)
        at = start + timedelta(seconds=len(records))
        roll = rng.random()
        if roll < 0.55:
            payloads = [HoursLogged(volunteer_id=volunteer, org_id="club", date=date(2026, 10, 31),
                                    minutes=rng.choice([30, 60, 90, 120]))]
        elif roll < 0.9:
            payloads = [CreditsRedeemed(volunteer_id=volunteer, partner_id="lido", amount=rng.randint(50, 300))]
        else:
            booking_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            payloads = [OpportunityBooked(volunteer_id=volunteer, opportunity_id="swim", partner_id="lido", amount=150),
                        BookingAttended(booking_event_id=booking_id, volunteer_id=volunteer)]
            _, raw = encode_event(payloads[0], actor=actor_for(payloads[0]), event_id=booking_id, occurred_at=at)
            records.append((volunteer.encode(), raw))
            payloads = payloads[1:]
        for payload in payloads:
            event_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            _, raw = encode_event(payload, actor=actor_for(payload), event_id=event_id, occurred_at=at)
            records.append((volunteer.encode(), raw))
    return records


def _event_ids(records: list[tuple[bytes, bytes]]) -> list[uuid.UUID]:
    return [decode_event(raw).event_id for _, raw in records]  # type: ignore[union-attr]


def _produce(stack: Stack, records: list[tuple[bytes, bytes]], per_second: float | None = None) -> None:
    started = time.monotonic()
    with stack.producer() as producer:
        for n, (key, raw) in enumerate(records):
            producer.send_raw(stack.topic(TOPIC_ACTIVITY), key, raw)
            if per_second and n % 100 == 0:
                time.sleep(max(0.0, started + n / per_second - time.monotonic()))


def _reference(embedded_postgres: str, template: str, records: list[tuple[bytes, bytes]]) -> dict[str, object]:
    """The ledger one clean pass makes: the same events, in the order produced, straight into a fresh database."""
    return clean_pass(embedded_postgres, template, records, ledger_summary)


def clean_pass(embedded_postgres: str, template: str, records: list[tuple[bytes, bytes]],
               read: Callable[[Engine], T], after_batch: Callable[[Engine, BatchResult], object] | None = None) -> T:
    """The events, in the order produced, applied in one pass to a fresh database, a batch of 1,000 at a time
    (each batch's result handed to `after_batch`); then what `read` reads of it."""
    with fresh_database(embedded_postgres, template) as url:
        engine = create_engine(url)
        processor = EventProcessor(engine)
        processor.process(_registry())
        items = [decode_event(raw) for _, raw in records]
        for start in range(0, len(items), 1000):
            result = processor.process(items[start : start + 1000])
            if after_batch is not None:
                after_batch(engine, result)
        found = read(engine)
        engine.dispose()
    return found


def _verify_cli(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "timecredits.cli", "verify"], capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": database_url}, timeout=300)


def test_worker_killed_mid_backlog_and_restarted_ends_with_the_clean_ledger(
    stack: Stack, embedded_postgres: str, primary_template: str
) -> None:
    EventProcessor(stack.engine).process(_registry())  # registry writes are synchronous (docs/design.md §2)
    records = _backlog(20_000)
    ids = _event_ids(records)
    _produce(stack, records)

    first = stack.start_worker()
    wait_until(lambda: decided_count(stack.engine, ids) >= 3_000, 120, "the first worker to make progress")
    first.kill()
    at_kill = decided_count(stack.engine, ids)
    assert at_kill < len(ids), "the worker was killed in the middle of the backlog"

    stack.start_worker()
    wait_until(lambda: decided_count(stack.engine, ids) == len(ids), 300, "the restarted worker to finish")
    time.sleep(2)  # a duplicate applied late would show up now

    assert ledger_summary(stack.engine) == _reference(embedded_postgres, primary_template, records)
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM entries")).scalar() == sum(
            ledger_summary(stack.engine)["entries"].values()  # type: ignore[union-attr]
        )
    verified = _verify_cli(stack.database_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_two_workers_share_partitions_and_one_stopping_mid_stream_loses_nothing(
    stack: Stack, embedded_postgres: str, primary_template: str
) -> None:
    EventProcessor(stack.engine).process(_registry())
    records = _backlog(20_000, seed=12)
    ids = _event_ids(records)
    first, second = stack.start_worker(metrics=True), stack.start_worker(metrics=True)
    producing = threading.Thread(target=_produce, args=(stack, records, 1000.0))
    producing.start()
    try:
        applied = "timecredits_events_applied_total"
        wait_until(lambda: first.metric(applied) > 0 and second.metric(applied) > 0, 120,
                   "both workers to be applying events")
        assert second.stop() == 0, second.log_tail()
        assert decided_count(stack.engine, ids) < len(ids), "the worker stopped mid-stream"
    finally:
        producing.join()
    wait_until(lambda: decided_count(stack.engine, ids) == len(ids), 300, "the remaining worker to finish")
    time.sleep(2)
    assert first.alive
    scraped = first.metrics_text()
    for family in ("timecredits_events_applied_total{", "timecredits_events_rejected_total{",
                   "timecredits_batch_size_bucket{", "timecredits_batch_seconds_bucket{", "timecredits_consumer_lag{"):
        assert family in scraped, family
    assert ledger_summary(stack.engine) == _reference(embedded_postgres, primary_template, records)
    verified = _verify_cli(stack.database_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
