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
partition at a time rather than a `send()` a record (see that module). A batch never fails half-way: a database
outage is retried on the same batch; anything else ends the process without committing (a restart replays it).
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import faust
from faust.app.base import BootStrategy
from aiokafka import ConsumerRecord
from mode import Service
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError, OperationalError

from consumers import metrics
from consumers.batches import BatchConsumer, ConsumerSettings, FollowUp, Records
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
)
from ledger.pg.processing import BatchResult, EventProcessor
from stats.facts import write_facts
from timecredits.heap import freeze_startup_heap

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The consumers a worker process can run: the ledger (tc.activity, tc.admin) and the statistics (tc.ledger).
CONSUMERS = ("ledger", "statistics")

#: Exit status when a batch fails for a reason other than a database outage: the batch was not acked.
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
    loglevel: str = "warn"
    #: Which consumers this process runs: both by default; one each lets the statistics run in a process of
    #: their own, beside rather than inside the ledger's GIL and event loop.
    consumers: frozenset[str] = frozenset(CONSUMERS)

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
    # disconnect, SQLAlchemy then discards the whole pool, and `_until_committed` retries the batch.
    engine = create_engine(config.database_url, pool_size=2, max_overflow=2, hide_parameters=True)
    processor = EventProcessor(engine)
    ledger_topic = config.topic_prefix + TOPIC_LEDGER
    rejected_topic = config.topic_prefix + TOPIC_REJECTED
    admin_topic = config.topic_prefix + TOPIC_ADMIN

    publisher = BatchPublisher(config.bootstrap_servers, f"{config.app_id}-publisher")

    async def publish(result: BatchResult, records: Records, items: Sequence[DecodedEvent | Undecodable]) -> None:
        entries = [(entry.partition_key.encode(), entry.to_json()) for entry in result.committed]
        dead_letters = [(record.key, dead_letter(record, item, outcome.reason, outcome.message))
                        for record, item, outcome in zip(records, items, result.outcomes)
                        if outcome.status == "rejected"]
        await asyncio.gather(publisher.publish(ledger_topic, entries), publisher.publish(rejected_topic, dead_letters))

    async def apply_batch(records: Records) -> FollowUp:
        """Apply the batch in one transaction; publishing its results is the follow-up that overlaps the next."""
        # Registry changes first: a volunteer registered in the same batch as their first hours is known by then.
        ordered = sorted(records, key=lambda record: record.topic != admin_topic)
        items = [check_key(decode_event(record.value or b""), record.key) for record in ordered]
        started = asyncio.get_running_loop().time()
        # Each partition is a hash chain of its own (docs/design.md §3): workers on other partitions never wait.
        chains = [f"{_logical_topic(record.topic, config.topic_prefix)}/{record.partition}" for record in ordered]
        result = await _until_committed(lambda: processor.process(items, chains), len(items))

        async def publish_results() -> None:
            await publish(result, ordered, items)
            metrics.observe_batch(_logical_topic(ordered[-1].topic, config.topic_prefix), result, items,
                                  asyncio.get_running_loop().time() - started)

        return publish_results()

    async def record_statistics(records: Records) -> None:
        """tc.ledger -> participation facts, idempotent by entry id."""
        entries = await asyncio.to_thread(_entries, records)  # beside the event loop, which the ledger shares
        await _until_committed(lambda: write_facts(engine, entries), len(entries))

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
    if "ledger" in config.consumers:
        services.insert(0, publisher)
    worker = faust.Worker(app, *services, loglevel=config.loglevel, quiet=True)
    # No start-up spinner: to turn it on every log record, faust sets the root logger to DEBUG for the life of
    # the process, so each debug line of aiokafka (one a message sent) would be formatted into a record and then
    # dropped, costing a busy worker CPU for nothing and writing terminal escapes into its log file.
    worker.spinner = None
    return worker


class _WithoutFaustsProducer(BootStrategy):
    """Results go out through the `BatchPublisher`: faust's own producer would be one more idle client a worker."""

    enable_kafka_producer = False


def _logical_topic(topic: str, prefix: str) -> str:
    return topic[len(prefix):] if prefix and topic.startswith(prefix) else topic


def _entries(records: Records) -> list[EntryCommitted]:
    return [entry for entry in (_entry(record.value or b"") for record in records) if entry is not None]


def _entry(value: bytes) -> EntryCommitted | None:
    try:
        return EntryCommitted.model_validate_json(value)
    except ValueError:
        log.error("not an entry on tc.ledger, ignored: %r", value[:200])
        return None


async def _until_committed(work: Callable[[], T], size: int) -> T:
    """Run `work` (one transaction) in a thread; retry while PostgreSQL is unavailable, die on anything else."""
    delay = 0.5
    while True:
        try:
            return await asyncio.to_thread(work)
        except DBAPIError as exc:
            if not (isinstance(exc, OperationalError) or exc.connection_invalidated):
                _die(exc)
            metrics.DATABASE_RETRIES.inc()
            log.warning("database unavailable, retrying %d events in %.1f s: %s", size, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        except BaseException as exc:  # noqa: BLE001 - anything else is a bug: replay the batch after a restart
            _die(exc)


def _die(exc: BaseException) -> None:
    log.critical("batch failed or its consumer stopped; exiting without committing, so the batch is delivered again",
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
