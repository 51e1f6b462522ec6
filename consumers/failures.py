"""What a consumer does when a batch fails: one rule, used by the ledger and the statistics consumers alike.

`classify(exception)` answers one of four verdicts:

- `RETRY`: the database went away (connection lost, server restarting, a deadlock or serialization failure):
  wait a little and apply the same batch again, for as long as it takes.
- `WAIT_AND_REPORT`: the database is up but cannot take writes (read-only: SQLSTATE 25006, a standby or
  `default_transaction_read_only`; out of disk: 53100; other insufficient resources: class 53). Nothing is wrong
  with the batch: wait, say so on a gauge and in one log line a minute, and resume when it clears.
- `ISOLATE`: the failure is deterministic and caused by the data (a data exception 22xxx, an integrity violation
  23xxx, a Python exception from the rules, the decoding or the encoding): split the batch until the one record
  is found, dead-letter it, apply the rest.
- `STOP`: anything else (an unknown SQLSTATE, a thread that did not come back): try the batch a few times more,
  then stop the partition it came from rather than loop on it or replay it for ever.

`BatchGuard` carries the rule out for a batch of records (see its docstring).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

import psycopg2
import psycopg2.errorcodes
import psycopg2.errors
from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from consumers import metrics

log = logging.getLogger(__name__)

R = TypeVar("R")


class Verdict(StrEnum):
    RETRY = "retry"
    WAIT_AND_REPORT = "wait_and_report"
    ISOLATE = "isolate"
    STOP = "stop"


@dataclass(frozen=True)
class Failure:
    """A verdict with a short reason code (a dead letter's `reason`, a metric's label) and a one-line detail."""

    verdict: Verdict
    reason: str
    detail: str


class ThreadTimedOut(Exception):
    """A batch's work in a thread did not finish within its timeout (the thread may still be running)."""


#: SQLSTATEs of a server that is going away or not there yet: the connection is lost, retry.
_UNAVAILABLE = {"57P01", "57P02", "57P03", "57P04", "57P05"}
#: SQLSTATEs of a conflict between transactions, which a retry resolves. (A statement timeout, 57014, is not
#: among them: the same batch may time out every time, so it is an unknown failure, which ends in a stop.)
_TRANSIENT = {"40001", "40P01", "55P03"}


def _codes_of_classes() -> dict[type, str]:
    codes: dict[type, str] = {}
    for code in vars(psycopg2.errorcodes).values():
        if isinstance(code, str) and len(code) == 5:
            try:
                codes.setdefault(psycopg2.errors.lookup(code), code)
            except KeyError:
                pass
    return codes


#: psycopg2's class for each SQLSTATE, the other way round: an error raised without a server (in Python) has
#: its class but no `pgcode`.
_CODE_OF_CLASS = _codes_of_classes()


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg2 error, raw or wrapped by SQLAlchemy; None when there is none."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if not isinstance(orig, psycopg2.Error):
        return None
    code = orig.pgcode or getattr(getattr(orig, "diag", None), "sqlstate", None)
    return code or _CODE_OF_CLASS.get(type(orig))


def classify(exc: BaseException) -> Failure:
    """The verdict for a batch that raised `exc` (see the module's docstring)."""
    detail = _one_line(exc)
    if isinstance(exc, ThreadTimedOut):
        # A stuck thread more often means a stuck database (a lock, a frozen server) than a poison record, and a
        # good record dead-lettered is worse than a partition stopped: treat it as an unknown failure.
        return Failure(Verdict.STOP, "processing_timeout", detail)
    if isinstance(exc, (DBAPIError, psycopg2.Error)):
        code = sqlstate(exc)
        if code == "25006":
            return Failure(Verdict.WAIT_AND_REPORT, "read_only", detail)
        if code == "53100":
            return Failure(Verdict.WAIT_AND_REPORT, "disk_full", detail)
        if code is not None and code.startswith("53"):
            return Failure(Verdict.WAIT_AND_REPORT, "insufficient_resources", detail)
        if code is not None and code.startswith("22"):
            return Failure(Verdict.ISOLATE, "data_error", detail)
        if code is not None and code.startswith("23"):
            return Failure(Verdict.ISOLATE, "integrity_error", detail)
        if code == "57014":
            return Failure(Verdict.STOP, "statement_timeout", detail)
        if code in _TRANSIENT:
            return Failure(Verdict.RETRY, "transaction_conflict", detail)
        invalidated = isinstance(exc, DBAPIError) and exc.connection_invalidated
        if (invalidated or code in _UNAVAILABLE or (code or "").startswith("08")
                or (code is None and isinstance(exc.orig if isinstance(exc, DBAPIError) else exc,
                                                (psycopg2.OperationalError, psycopg2.InterfaceError)))):
            return Failure(Verdict.RETRY, "database_unavailable", detail)
        return Failure(Verdict.STOP, "database_error", detail)
    if isinstance(exc, PoolTimeout):  # no connection free in the pool in time: the database is slow or away
        return Failure(Verdict.RETRY, "database_unavailable", detail)
    if isinstance(exc, StatementError):  # a value SQLAlchemy could not bind: the record's
        return Failure(Verdict.ISOLATE, "processing_error", detail)
    if isinstance(exc, SQLAlchemyError):
        return Failure(Verdict.STOP, "database_error", detail)
    if isinstance(exc, MemoryError):
        return Failure(Verdict.STOP, "out_of_memory", detail)
    if isinstance(exc, Exception):  # StopIteration, OverflowError, ValueError, KeyError, ... from the rules
        return Failure(Verdict.ISOLATE, "processing_error", detail)
    return Failure(Verdict.STOP, "unexpected", detail)


def _one_line(exc: BaseException) -> str:
    text = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300]


async def in_thread(work: Callable[[], R], timeout_s: float) -> R:
    """`work()` in a thread, awaited for at most `timeout_s` seconds.

    The thread catches everything `work` raises and hands it back as a value: some exceptions cannot be set on a
    future (StopIteration is one: the future would never complete and its consumer would hang). A thread cannot
    be cancelled: on timeout it runs on, its result ignored, and `ThreadTimedOut` is raised for the batch.
    """
    try:
        ok, value = await asyncio.wait_for(asyncio.to_thread(_captured, work), timeout_s)
    except TimeoutError:
        raise ThreadTimedOut(f"no answer from the batch's thread within {timeout_s:g} s") from None
    if ok:
        return value  # type: ignore[no-any-return]
    raise _Raised(value)


class _Raised(Exception):
    """What `work` raised in its thread, carried across (never raised as itself: it may be a StopIteration)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _captured(work: Callable[[], R]) -> tuple[bool, Any]:
    try:
        return True, work()
    except BaseException as exc:  # noqa: BLE001 - handed back to the event loop as a value
        return False, exc


@dataclass(frozen=True)
class Poisoned:
    """A record found to fail on its own, with why."""

    record: ConsumerRecord
    failure: Failure


@dataclass
class Guarded(Generic[R]):
    """What a guarded batch came to: the results of the parts applied (in order), the poison found, and the
    partitions stopped, each at the offset of its first record not applied."""

    results: list[tuple[list[ConsumerRecord], R]]
    poisoned: list[Poisoned]
    stopped: dict[TopicPartition, int]



def classify_ledger(exc: BaseException) -> Failure:
    """`classify` for the ledger consumer, but for an integrity violation, which stops the partition.

    The ledger's own batch pipeline already isolates every refusal the database makes for an event's sake
    (`ledger.pg.processing`) and records it with the event's reason; an integrity error that still reaches the
    consumer names a constraint the code does not know, such as a schema migrated ahead of its workers. No event
    is its cause, and recording the events it refuses as rejected would lose them for good: stop instead, and
    the batch is applied once code and schema agree.
    """
    failure = classify(exc)
    if failure.verdict is Verdict.ISOLATE and failure.reason == "integrity_error":
        return Failure(Verdict.STOP, "unknown_constraint", failure.detail)
    return failure


class BatchGuard:
    """Applies a batch of records with `work(records)` (run in a thread, with a timeout), by the rule above.

    Order: the parts of a split batch are applied in their order, so a partition's records stay in offset order;
    once a partition is stopped, none of its later records are applied. `on_wait` is called before each retry
    while the database refuses writes (the worker drops its pooled connections there, as a session made before
    a database turned read-write again stays read-only).
    """

    def __init__(self, consumer: str, timeout_s: float = 120.0, *, stop_after: int = 3, retry_max_s: float = 10.0,
                 wait_s: float = 5.0, report_every_s: float = 60.0, on_wait: Callable[[], None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 classifier: Callable[[BaseException], Failure] | None = None) -> None:
        self.consumer = consumer
        self.timeout_s = timeout_s
        self.stop_after = stop_after
        self.retry_max_s = retry_max_s
        self.wait_s = wait_s
        self.report_every_s = report_every_s
        self._on_wait = on_wait
        self._sleep = sleep
        self._classify = classifier or classify

    async def apply(self, records: Sequence[ConsumerRecord], work: Callable[[list[ConsumerRecord]], R]) -> Guarded[R]:
        outcome: Guarded[R] = Guarded([], [], {})
        await self._apply(list(records), work, outcome, split_by_partition=True)
        return outcome

    async def _apply(self, records: list[ConsumerRecord], work: Callable[[list[ConsumerRecord]], R],
                     outcome: Guarded[R], split_by_partition: bool) -> None:
        records = [r for r in records if TopicPartition(r.topic, r.partition) not in outcome.stopped]
        if not records:
            return
        delay = 0.5
        unknown_failures = 0
        waiting_since: float | None = None
        waiting_for = ""
        reported_at = 0.0
        while True:
            try:
                result = await in_thread(lambda: work(records), self.timeout_s)
            except (_Raised, ThreadTimedOut) as raised:
                error = raised.error if isinstance(raised, _Raised) else raised
            else:
                if waiting_since is not None:
                    self._resumed(waiting_since, waiting_for)
                outcome.results.append((records, result))
                return
            failure = self._classify(error)
            metrics.BATCH_FAILURES.labels(self.consumer, failure.verdict.value, failure.reason).inc()
            if failure.verdict is Verdict.RETRY:
                metrics.DATABASE_RETRIES.inc()
                log.warning("%s: database unavailable, retrying %d records in %.1f s: %s", self.consumer,
                            len(records), delay, failure.detail)
                await self._sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
            elif failure.verdict is Verdict.WAIT_AND_REPORT:
                now = time.monotonic()
                if waiting_since is None or failure.reason != waiting_for:
                    if waiting_since is not None:
                        metrics.DATABASE_BLOCKED.labels(self.consumer, waiting_for).set(0)
                    waiting_since = waiting_since or now
                    waiting_for = failure.reason
                    metrics.DATABASE_BLOCKED.labels(self.consumer, failure.reason).set(1)
                if now - reported_at >= self.report_every_s:
                    reported_at = now
                    log.warning("%s: database refuses writes (%s), %d records waiting for %.0f s; retrying every "
                                "%.0f s: %s", self.consumer, failure.reason, len(records), now - waiting_since,
                                self.wait_s, failure.detail)
                if self._on_wait is not None:
                    self._on_wait()
                await self._sleep(self.wait_s)
            elif failure.verdict is Verdict.ISOLATE:
                if waiting_since is not None:
                    self._resumed(waiting_since, waiting_for)
                if len(records) == 1:
                    outcome.poisoned.append(Poisoned(records[0], failure))
                    metrics.DEAD_LETTERED.labels(self.consumer, failure.reason).inc()
                    record = records[0]
                    log.error("%s: record %s[%d]@%d fails on its own (%s), sent to the dead letters: %s",
                              self.consumer, record.topic, record.partition, record.offset, failure.reason,
                              failure.detail)
                    return
                half = len(records) // 2
                await self._apply(records[:half], work, outcome, split_by_partition)
                await self._apply(records[half:], work, outcome, split_by_partition)
                return
            else:
                unknown_failures += 1
                if unknown_failures < self.stop_after:
                    log.warning("%s: batch of %d records failed (%s, attempt %d of %d), retrying in %.1f s: %s",
                                self.consumer, len(records), failure.reason, unknown_failures, self.stop_after,
                                delay, failure.detail)
                    await self._sleep(delay)
                    delay = min(delay * 2, self.retry_max_s)
                    continue
                if waiting_since is not None:
                    self._resumed(waiting_since, waiting_for)
                partitions = _by_partition(records)
                if split_by_partition and len(partitions) > 1:
                    for part in partitions.values():  # each partition on its own: only the failing ones stop
                        await self._apply(part, work, outcome, split_by_partition=False)
                    return
                for tp, part in partitions.items():
                    offset = min(r.offset for r in part)
                    outcome.stopped[tp] = offset
                    metrics.PARTITION_STOPPED.labels(self.consumer, tp.topic, str(tp.partition)).set(1)
                    log.critical("%s: partition %s[%d] stopped at offset %d after %d failed attempts (%s): %s. "
                                 "Its records wait there; fix the cause and restart the worker to resume it.",
                                 self.consumer, tp.topic, tp.partition, offset, unknown_failures, failure.reason,
                                 failure.detail)
                return

    def _resumed(self, since: float, reason: str) -> None:
        metrics.DATABASE_BLOCKED.labels(self.consumer, reason).set(0)
        log.warning("%s: database takes writes again after %.0f s; resuming", self.consumer, time.monotonic() - since)


def _by_partition(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, list[ConsumerRecord]]:
    parts: dict[TopicPartition, list[ConsumerRecord]] = {}
    for record in records:
        parts.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    return parts
