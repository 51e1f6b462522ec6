"""The ledger worker: a faust app that applies `tc.activity` and `tc.admin` to PostgreSQL in batches, and
records participation facts from `tc.ledger` for the statistics.

Exactly-once effect from at-least-once delivery (design.md §2): each batch taken from Kafka is applied in one
PostgreSQL transaction by `EventProcessor`; only after the commit are the committed entries published to
`tc.ledger`, the rejections to `tc.rejected`, and the batch's events acked, so their offsets commit on faust's
next commit tick. A crash anywhere before the ack means the batch is delivered again, and the ledger's unique
event ids turn the replay into duplicates.

Why `noack_take` and not `take`: `take`/`take_events` ack a batch in a `finally` block, so a batch whose
processing raised would be acked (and its offsets committed) anyway, losing it. For the same reason the agent
never raises: a database outage is retried on the same batch; anything else ends the process unacked
(a restart replays the batch), because a crashed agent restarted by faust would carry on past it.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import faust
from faust.types import EventT, StreamT
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError, OperationalError

from consumers import metrics
from ledger.events import (
    TOPIC_ACTIVITY,
    TOPIC_ADMIN,
    TOPIC_LEDGER,
    TOPIC_REJECTED,
    DecodedEvent,
    EntryCommitted,
    Undecodable,
    decode_event,
)
from ledger.processing import BatchResult, EventProcessor
from stats.facts import write_facts

T = TypeVar("T")

log = logging.getLogger(__name__)

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

    @property
    def app_id(self) -> str:
        return f"{self.topic_prefix}timecredits-ledger"


def create_app(config: WorkerConfig) -> faust.App:
    """The faust app, its agents and topics; settings chosen to work on Apache Kafka and on Tansu.

    Tansu (design.md §6): a group join waits about one session timeout, so the session timeout stays short
    (10 s) and the max poll interval near 30 s; topics are created by `ensure_topics` beforehand, so faust
    declares none (and needs no leader topic: the app has no tables).
    """
    app = faust.App(
        config.app_id,
        broker=f"kafka://{config.bootstrap_servers}",
        store="memory://",
        datadir=str(config.data_dir / "faust"),
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=max(1.0, config.session_timeout_s / 3.5),
        broker_rebalance_timeout=config.session_timeout_s,
        broker_max_poll_interval=30.0,
        broker_request_timeout=max(40.0, config.session_timeout_s + 10),
        broker_commit_interval=1.0,
        stream_wait_empty=True,
        producer_acks=-1,
    )
    engine = create_engine(config.database_url, pool_pre_ping=True, pool_size=2, max_overflow=2)
    processor = EventProcessor(engine)
    ledger_topic = app.topic(config.topic_prefix + TOPIC_LEDGER, key_serializer="raw", value_serializer="raw")
    rejected_topic = app.topic(config.topic_prefix + TOPIC_REJECTED, key_serializer="raw", value_serializer="raw")

    async def publish(result: BatchResult, events: Sequence[EventT], items: Sequence[DecodedEvent | Undecodable]) -> None:
        sends = [
            ledger_topic.send(key=entry.partition_key.encode(), value=entry.model_dump_json().encode())
            for entry in result.committed
        ]
        for event, item, outcome in zip(events, items, result.outcomes):
            if outcome.status == "rejected":
                sends.append(rejected_topic.send(key=event.message.key, value=dead_letter(event, item, outcome.reason, outcome.message)))
        await asyncio.gather(*sends)

    def make_agent(source: str):  # type: ignore[no-untyped-def]
        async def apply_batches(stream: StreamT) -> None:
            async for events in stream.noack_take(config.batch_size, within=config.batch_within_s):
                items = [decode_event(event.value) for event in events]
                started = asyncio.get_running_loop().time()
                result = await _apply_until_committed(processor, items)
                await publish(result, events, items)
                for event in events:
                    await stream.ack(event)
                metrics.observe_batch(source, result, items, asyncio.get_running_loop().time() - started)
                _record_lag(app, events)

        apply_batches.__name__ = f"apply_{source.replace('.', '_')}"
        return apply_batches

    for source in (TOPIC_ACTIVITY, TOPIC_ADMIN):
        topic = app.topic(config.topic_prefix + source, key_serializer="raw", value_serializer="raw")
        app.agent(topic, name=f"apply-{source}")(make_agent(source))

    async def record_statistics(stream: StreamT) -> None:
        """tc.ledger -> participation facts, idempotent by entry id, acked after the commit."""
        async for events in stream.noack_take(config.batch_size, within=config.batch_within_s):
            entries = [entry for entry in (_entry(event.value) for event in events) if entry is not None]
            await _until_committed(lambda: write_facts(engine, entries), len(entries))
            for event in events:
                await stream.ack(event)
            _record_lag(app, events)

    app.agent(ledger_topic, name="statistics")(record_statistics)
    return app


def _record_lag(app: faust.App, events: Sequence[EventT]) -> None:
    """Consumer lag per partition: the broker's high-water mark minus the next offset to process."""
    last: dict[object, int] = {}
    for event in events:
        last[event.message.tp] = max(last.get(event.message.tp, -1), event.message.offset)
    for tp, offset in last.items():
        highwater = app.consumer.highwater(tp)  # type: ignore[arg-type]
        if highwater is not None:
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - offset - 1))  # type: ignore[attr-defined]


def _entry(value: bytes) -> EntryCommitted | None:
    try:
        return EntryCommitted.model_validate_json(value)
    except ValueError:
        log.error("not an entry on tc.ledger, ignored: %r", value[:200])
        return None


async def _apply_until_committed(processor: EventProcessor, items: list[DecodedEvent | Undecodable]) -> BatchResult:
    return await _until_committed(lambda: processor.process(items), len(items))


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
    log.critical("batch failed; exiting without ack so that it is delivered again", exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)


def dead_letter(event: EventT, item: DecodedEvent | Undecodable, reason: str | None, message: str | None) -> bytes:
    """What `tc.rejected` carries: the original bytes, the reason code, the time, and where it came from."""
    value = event.value if isinstance(event.value, bytes) else b""
    record = {
        "reason": reason,
        "message": message,
        "event_id": str(item.event_id) if item.event_id else None,
        "type": item.type,
        "original": base64.b64encode(value).decode("ascii"),
        "source": {"topic": event.message.topic, "partition": event.message.partition, "offset": event.message.offset},
        "rejected_at": datetime.now(UTC).isoformat(),
    }
    return json.dumps(record, separators=(",", ":")).encode()


def run_worker(config: WorkerConfig, loglevel: str = "warn") -> None:
    """Run until SIGINT or SIGTERM; a clean stop commits what was acked and leaves the group."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(config)
    metrics.start_server_from_env()
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
