"""The ledger worker: a faust worker that applies `tc.activity` and `tc.admin` to PostgreSQL in batches, and
records participation facts from `tc.ledger` for the statistics.

Exactly-once effect from at-least-once delivery (docs/design.md §2): each batch taken from Kafka is applied in one
PostgreSQL transaction by `EventProcessor`; only after the commit are the committed entries published to
`tc.ledger` and the rejections to `tc.rejected`, and only then are the batch's offsets committed
(`consumers.batches`). A crash anywhere before that means the batch is delivered again, and the ledger's unique
event ids turn the replay into duplicates.

faust runs the process: its worker owns the event loop, signals and logging; the two consumers are
`BatchConsumer` services it starts and stops with the app (see that module for why they take batches from
aiokafka rather than faust streams), and so is the `BatchPublisher` that publishes results a record batch a
partition at a time rather than a `send()` a record (see that module). A batch never fails half-way: what a
failure leads to is decided by `consumers.failures` (retry, wait for a writable database, isolate the one record
and dead-letter it, or stop the partition); only a failure of a consumer's own loop ends the process.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import faust
from faust.app.base import BootStrategy
from aiokafka import ConsumerRecord
from mode import Service
from pydantic import ValidationError
from sqlalchemy import Engine, create_engine

from consumers import metrics
from consumers.batches import BatchConsumer, ConsumerSettings, FollowUp, Records
from consumers.failures import BatchGuard, Failure, classify_ledger, in_thread
from consumers.publishing import BatchPublisher
from ledger.events import (
    TOPIC_ACTIVITY,
    TOPIC_ADMIN,
    TOPIC_LEDGER,
    TOPIC_REJECTED,
    DecodedEvent,
    EntryCommitted,
    Undecodable,
    check_key,
    decode_event,
    summarise,
)
from ledger.intake import DEFAULT_POLICY, IntakePolicy
from ledger.pg.processing import BatchResult, EventOutcome, EventProcessor, record_rejection
from stats.facts import write_facts
from timecredits.heap import freeze_startup_heap

log = logging.getLogger(__name__)

#: The consumers a worker process can run: the ledger (tc.activity, tc.admin) and the statistics (tc.ledger).
CONSUMERS = ("ledger", "statistics")

#: Exit status when a consumer's loop fails: the batch in hand was not acked.
EXIT_BATCH_FAILED = 70


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap_servers: str
    database_url: str
    data_dir: Path
    topic_prefix: str = ""
    batch_size: int = 1000
    batch_within_s: float = 0.2
    session_timeout_s: float = 10.0
    #: How long a batch's work in a thread may take: a thread cannot be cancelled, so beyond this the batch
    #: counts as failed (consumers.failures) and the thread's eventual result is ignored.
    thread_timeout_s: float = 120.0
    loglevel: str = "warn"
    #: Which consumers this process runs: both by default; one each lets the statistics run in a process of
    #: their own, beside rather than inside the ledger's GIL and event loop.
    consumers: frozenset[str] = frozenset(CONSUMERS)
    #: The programme's settings the intake rules apply (docs/design.md §5.6).
    policy: IntakePolicy = DEFAULT_POLICY

    @property
    def app_id(self) -> str:
        return ledger_group(self.topic_prefix)


def ledger_group(topic_prefix: str) -> str:
    """The consumer group of the ledger (tc.activity, tc.admin); also the faust app id."""
    return f"{topic_prefix}timecredits-ledger"


def statistics_group(topic_prefix: str) -> str:
    """The consumer group of the statistics (tc.ledger)."""
    return f"{topic_prefix}timecredits-statistics"


def create_worker(config: WorkerConfig) -> faust.Worker:
    """The faust worker with its two batch consumers: the ledger (activity and admin) and the statistics."""
    app = faust.App(
        config.app_id,
        broker=f"kafka://{config.bootstrap_servers}",
        store="memory://",
        datadir=str(config.data_dir / "faust"),
        web_enabled=False,
        topic_allow_declare=False,
    )
    # faust's own Kafka clients stay off: the batch consumers and the publisher below are the worker's. (The
    # `producer_only` setting does not do this: it is the attribute, set here, that picks what the app starts.)
    app.producer_only = True
    app.boot_strategy = _WithoutFaustsProducer(app)
    # hide_parameters: an outage's retry warnings would otherwise print a batch's thousands of values.
    # No pre-ping (a round trip before every transaction): a connection the server dropped fails the batch with a
    # disconnect, SQLAlchemy then discards the whole pool, and the batch's guard retries it (consumers.failures).
    engine = create_engine(config.database_url, pool_size=2, max_overflow=2, hide_parameters=True)
    processor = EventProcessor(engine, config.policy)
    ledger_topic = config.topic_prefix + TOPIC_LEDGER
    rejected_topic = config.topic_prefix + TOPIC_REJECTED
    admin_topic = config.topic_prefix + TOPIC_ADMIN

    publisher = BatchPublisher(config.bootstrap_servers, f"{config.app_id}-publisher")
    # Between retries while the database refuses writes, the pooled connections are dropped: a session opened
    # while the database was read-only (or on a standby since promoted) stays read-only for its whole life.
    ledger_guard = BatchGuard("ledger", config.thread_timeout_s, on_wait=engine.dispose, classifier=classify_ledger)
    statistics_guard = BatchGuard("statistics", config.thread_timeout_s, on_wait=engine.dispose)

    async def publish(result: BatchResult, records: Records, items: Sequence[DecodedEvent | Undecodable]) -> None:
        entries = [(entry.partition_key.encode(), entry.to_json()) for entry in result.committed]
        dead_letters = [(record.key, dead_letter(record, item, outcome.reason, outcome.message))
                        for record, item, outcome in zip(records, items, result.outcomes)
                        if outcome.status == "rejected"]
        await asyncio.gather(publisher.publish(ledger_topic, entries), publisher.publish(rejected_topic, dead_letters))

    async def apply_batch(records: Records) -> FollowUp | None:
        """Apply the batch in one transaction; publishing its results is the follow-up that overlaps the next.

        A batch that fails is handled by `ledger_guard` (consumers.failures): a record failing on its own is
        rejected and dead-lettered like any refused event, and a partition failing for an unknown reason stops."""
        # Registry changes first: a volunteer registered in the same batch as their first hours is known by then.
        ordered = sorted(records, key=lambda record: record.topic != admin_topic)
        decoded = {id(record): check_key(decode_event(record.value or b""), record.key) for record in ordered}
        started = asyncio.get_running_loop().time()
        # Each partition is a hash chain of its own (docs/design.md §3.3): workers on other partitions never wait.
        guarded = await ledger_guard.apply(
            ordered, lambda part: processor.process([decoded[id(record)] for record in part],
                                                    [_chain_of(record, config.topic_prefix) for record in part]))
        outcomes: dict[int, EventOutcome] = {}
        committed = []
        for part, part_result in guarded.results:
            outcomes.update(zip(map(id, part), part_result.outcomes))
            committed.extend(part_result.committed)
        for poisoned in guarded.poisoned:
            item = decoded[id(poisoned.record)]
            outcomes[id(poisoned.record)] = await _reject_poison(engine, item, poisoned.failure,
                                                                 config.thread_timeout_s)
        if guarded.stopped:
            ledger.stop_partitions(guarded.stopped)
        applied = [record for record in ordered if id(record) in outcomes]
        if not applied:
            return None
        items = [decoded[id(record)] for record in applied]
        result = BatchResult([outcomes[id(record)] for record in applied], committed)

        async def publish_results() -> None:
            await publish(result, applied, items)
            metrics.observe_batch(_logical_topic(applied[-1].topic, config.topic_prefix), result, items,
                                  asyncio.get_running_loop().time() - started)

        return publish_results()

    async def record_statistics(records: Records) -> FollowUp | None:
        """tc.ledger -> participation facts, idempotent by entry id. What is not an entry is dead-lettered as
        `invalid_entry`; an entry failing on its own with the failure's reason (such as `processing_error`)."""
        # Decoding too runs in the thread: beside the event loop, which the ledger shares.
        guarded = await statistics_guard.apply(records, lambda part: _write_facts_of(engine, part))
        letters = []
        for _, invalid in guarded.results:
            for record, detail in invalid:
                metrics.DEAD_LETTERED.labels("statistics", "invalid_entry").inc()
                log.error("statistics: record %s[%d]@%d is not a ledger entry, sent to the dead letters: %s",
                          record.topic, record.partition, record.offset, detail)
                letters.append((record, "invalid_entry", detail))
        letters += [(p.record, p.failure.reason, p.failure.detail) for p in guarded.poisoned]
        if guarded.stopped:
            statistics.stop_partitions(guarded.stopped)
        if not letters:
            return None
        dead = [(record.key, dead_letter(record, _ledger_item(record, reason, detail), reason, detail))
                for record, reason, detail in letters]
        return publisher.publish(rejected_topic, dead)

    def settings(group_id: str) -> ConsumerSettings:
        return ConsumerSettings(config.bootstrap_servers, group_id, config.batch_size, config.batch_within_s,
                                config.session_timeout_s)

    ledger = BatchConsumer("ledger", [config.topic_prefix + TOPIC_ACTIVITY, admin_topic], settings(config.app_id),
                           apply_batch, on_crash=_die)
    # The statistics may lag the ledger by half a second: their consumer waits at the broker for 256 KiB (about
    # 1,000 entries) or 500 ms, so that it commits a few large transactions rather than one per small batch,
    # and leaves the cores to the ledger, whose balances are what a volunteer is waiting to see.
    statistics_settings = replace(settings(statistics_group(config.topic_prefix)),
                                  fetch_max_wait_ms=500, fetch_min_bytes=256 * 1024)
    statistics = BatchConsumer("statistics", [ledger_topic], statistics_settings, record_statistics, on_crash=_die)
    chosen = {"ledger": ledger, "statistics": statistics}
    unknown = config.consumers - chosen.keys()
    if unknown or not config.consumers:
        raise ValueError(f"consumers must be among {CONSUMERS}, got {sorted(config.consumers)}")
    # The publisher first: children start in order and stop in reverse, so it outlives the ledger's last batch.
    services: list[Service] = [chosen[name] for name in CONSUMERS if name in config.consumers]
    services.insert(0, publisher)  # the ledger's entries and dead letters, the statistics' dead letters
    worker = faust.Worker(app, *services, loglevel=config.loglevel, quiet=True)
    # No start-up spinner: to turn it on every log record, faust sets the root logger to DEBUG for the life of
    # the process, so each debug line of aiokafka (one a message sent) would be formatted into a record and then
    # dropped, costing a busy worker CPU for nothing and writing terminal escapes into its log file.
    worker.spinner = None
    return worker


class _WithoutFaustsProducer(BootStrategy):
    """Results go out through the `BatchPublisher`: faust's own producer would be one more idle client a worker."""

    enable_kafka_producer = False


def _chain_of(record: ConsumerRecord, prefix: str) -> str:
    """The hash chain a record's entry extends: its partition, named without the deployment's topic prefix."""
    return f"{_logical_topic(record.topic, prefix)}/{record.partition}"


def _logical_topic(topic: str, prefix: str) -> str:
    return topic[len(prefix):] if prefix and topic.startswith(prefix) else topic


def _write_facts_of(engine: Engine, records: Sequence[ConsumerRecord]) -> list[tuple[ConsumerRecord, str]]:
    """Facts for the entries among `records`, in one transaction; answers the records that are not entries."""
    entries: list[EntryCommitted] = []
    invalid: list[tuple[ConsumerRecord, str]] = []
    for record in records:
        entry = _entry(record.value or b"")
        if isinstance(entry, str):
            invalid.append((record, entry))
        else:
            entries.append(entry)
    write_facts(engine, entries)
    return invalid


def _entry(value: bytes) -> EntryCommitted | str:
    """The entry, or why these bytes are not one."""
    try:
        return EntryCommitted.model_validate_json(value)
    except ValidationError as exc:
        return summarise(exc)


def _ledger_item(record: ConsumerRecord, reason: str, detail: str) -> Undecodable:
    """What a dead letter from tc.ledger names: the entry's event id and type, when they can be read."""
    event_id = None
    try:
        raw = json.loads(record.value or b"")
        if isinstance(raw, dict) and isinstance(raw.get("event_id"), str):
            event_id = UUID(raw["event_id"])
    except (ValueError, UnicodeDecodeError):
        pass
    return Undecodable(reason, detail, event_id, EntryCommitted.__name__)


async def _reject_poison(engine: Engine, item: DecodedEvent | Undecodable, failure: Failure,
                         timeout_s: float) -> EventOutcome:
    """A ledger record that failed on its own: its rejection recorded (so `GET /v1/events/{id}` tells it) and
    its outcome, which publishes its dead letter. Should even the rejection fail to be written, the dead
    letter still goes out: the record is not applied either way."""
    if item.event_id is not None:
        event_id = item.event_id
        try:
            return await in_thread(lambda: record_rejection(engine, item, failure.reason, failure.detail), timeout_s)
        except Exception as exc:  # noqa: BLE001 - logged; the dead letter is what matters now
            log.error("ledger: the rejection of %s was not recorded: %s", event_id, str(exc)[:300])
    return EventOutcome(item.event_id, item.type, "rejected", reason=failure.reason, message=failure.detail)


def _die(exc: BaseException) -> None:
    log.critical("a consumer's loop failed (not a batch: those are handled by consumers.failures); exiting "
                 "without committing, so its batch is delivered again",
                 exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)


def dead_letter(record: ConsumerRecord, item: DecodedEvent | Undecodable, reason: str | None,
                message: str | None) -> bytes:
    """What `tc.rejected` carries: the original bytes, the reason code, the time, and where it came from."""
    value = record.value if isinstance(record.value, bytes) else b""
    entry = {
        "reason": reason,
        "message": message,
        "event_id": str(item.event_id) if item.event_id else None,
        "type": item.type,
        "original": base64.b64encode(value).decode("ascii"),
        "source": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
        "rejected_at": datetime.now(UTC).isoformat(),
    }
    return json.dumps(entry, separators=(",", ":")).encode()


def run_worker(config: WorkerConfig) -> None:
    """Run until SIGINT or SIGTERM; a clean stop finishes the batch in hand, commits it and leaves the group."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    worker = create_worker(config)
    metrics.start_server_from_env()
    # Every module, model and client is made by now: once frozen, a full collection no longer walks them all (a
    # busy worker's batches promote enough objects to trigger one every few batches; see timecredits/heap.py).
    freeze_startup_heap()
    worker.execute_from_commandline()
