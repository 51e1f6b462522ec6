"""The failure rule (consumers/failures.py) on exceptions built from psycopg2's own error classes (real classes,
raised without a server) and on Python's, and `BatchGuard` splitting, waiting and stopping on real records."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg2
import psycopg2.errors as pg
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy.exc import DBAPIError, InvalidRequestError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from consumers import metrics
from consumers.failures import BatchGuard, ThreadTimedOut, Verdict, classify, sqlstate


def _wrapped(error: Exception, invalidated: bool = False) -> DBAPIError:
    """As SQLAlchemy raises it from a statement."""
    return DBAPIError.instance("INSERT ...", {}, error, psycopg2.Error, connection_invalidated=invalidated)


@pytest.mark.parametrize(("error", "verdict", "reason"), [
    (pg.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), Verdict.WAIT_AND_REPORT,
     "read_only"),
    (pg.DiskFull("could not extend file: No space left on device"), Verdict.WAIT_AND_REPORT, "disk_full"),
    (pg.OutOfMemory("out of memory"), Verdict.WAIT_AND_REPORT, "insufficient_resources"),
    (pg.NumericValueOutOfRange("integer out of range"), Verdict.ISOLATE, "data_error"),
    (pg.InvalidTextRepresentation("invalid input syntax"), Verdict.ISOLATE, "data_error"),
    (pg.UniqueViolation("duplicate key"), Verdict.ISOLATE, "integrity_error"),
    (pg.CheckViolation("violates check constraint"), Verdict.ISOLATE, "integrity_error"),
    (pg.AdminShutdown("terminating connection due to administrator command"), Verdict.RETRY,
     "database_unavailable"),
    (pg.CannotConnectNow("the database system is starting up"), Verdict.RETRY, "database_unavailable"),
    (psycopg2.OperationalError("server closed the connection unexpectedly"), Verdict.RETRY, "database_unavailable"),
    (psycopg2.InterfaceError("connection already closed"), Verdict.RETRY, "database_unavailable"),
    (pg.DeadlockDetected("deadlock detected"), Verdict.RETRY, "transaction_conflict"),
    (pg.SerializationFailure("could not serialize access"), Verdict.RETRY, "transaction_conflict"),
    (pg.QueryCanceled("canceling statement due to statement timeout"), Verdict.STOP, "statement_timeout"),
    (pg.UndefinedTable('relation "entries" does not exist'), Verdict.STOP, "database_error"),
    (pg.InternalError_("internal error"), Verdict.STOP, "database_error"),
    (pg.InsufficientPrivilege("permission denied"), Verdict.STOP, "database_error"),
])
def test_database_errors_raw_and_wrapped_by_sqlalchemy(error: Exception, verdict: Verdict, reason: str) -> None:
    for exc in (error, _wrapped(error)):
        failure = classify(exc)
        assert (failure.verdict, failure.reason) == (verdict, reason), exc
        assert failure.detail.startswith(type(exc).__name__)


def test_the_sqlstate_of_an_error_raised_without_a_server_comes_from_its_class() -> None:
    assert sqlstate(pg.DiskFull("x")) == "53100"
    assert sqlstate(_wrapped(pg.ReadOnlySqlTransaction("x"))) == "25006"
    assert sqlstate(psycopg2.OperationalError("x")) is None
    assert sqlstate(ValueError("x")) is None


def test_a_connection_sqlalchemy_saw_invalidated_is_retried_whatever_its_error() -> None:
    assert classify(_wrapped(psycopg2.DatabaseError("SSL SYSCALL error: EOF detected"), invalidated=True)).verdict \
        is Verdict.RETRY


@pytest.mark.parametrize(("exc", "verdict", "reason"), [
    (StopIteration(), Verdict.ISOLATE, "processing_error"),
    (OverflowError("date value out of range"), Verdict.ISOLATE, "processing_error"),
    (KeyError("volunteer:x"), Verdict.ISOLATE, "processing_error"),
    (ValueError("bad"), Verdict.ISOLATE, "processing_error"),
    (RecursionError("maximum recursion depth exceeded"), Verdict.ISOLATE, "processing_error"),
    (StatementError("could not bind", "INSERT", {}, TypeError("not a date")), Verdict.ISOLATE,
     "processing_error"),
    (PoolTimeout("QueuePool limit reached"), Verdict.RETRY, "database_unavailable"),
    (InvalidRequestError("this transaction is inactive"), Verdict.STOP, "database_error"),
    (ThreadTimedOut("no answer within 120 s"), Verdict.STOP, "processing_timeout"),
    (MemoryError(), Verdict.STOP, "out_of_memory"),
])
def test_python_failures(exc: BaseException, verdict: Verdict, reason: str) -> None:
    failure = classify(exc)
    assert (failure.verdict, failure.reason) == (verdict, reason)


# --- BatchGuard ---------------------------------------------------------------------------------------------------


def _records(spec: list[tuple[int, bytes]]) -> list[ConsumerRecord]:
    """Records of topic "t": (partition, value), offsets counted per partition."""
    offsets: dict[int, int] = {}
    records = []
    for partition, value in spec:
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        records.append(ConsumerRecord("t", partition, offset, 0, 0, None, value, None, 0, len(value), []))
    return records


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def _guard(name: str, **kwargs: object) -> BatchGuard:
    return BatchGuard(name, timeout_s=5, sleep=_no_sleep, **kwargs)  # type: ignore[arg-type]


def _failing_on(bad: Callable[[bytes], Exception | None]) -> Callable[[list[ConsumerRecord]], list[bytes]]:
    def work(part: list[ConsumerRecord]) -> list[bytes]:
        for record in part:
            error = bad(record.value)
            if error is not None:
                raise error
        return [record.value for record in part]
    return work


def test_a_record_failing_on_its_own_is_isolated_and_the_rest_applied_in_order() -> None:
    records = _records([(n % 3, f"r{n}".encode()) for n in range(40)])
    records[17] = _records([(2, b"StopIteration")])[0]
    work = _failing_on(lambda value: StopIteration() if value == b"StopIteration" else None)
    guarded = asyncio.run(_guard("unit-isolate").apply(records, work))
    assert [p.record.value for p in guarded.poisoned] == [b"StopIteration"]
    assert guarded.poisoned[0].failure.reason == "processing_error"
    applied = [value for _, values in guarded.results for value in values]
    assert applied == [r.value for r in records if r.value != b"StopIteration"]
    assert not guarded.stopped


def test_a_read_only_database_is_waited_for_reported_and_the_batch_applied_when_it_clears() -> None:
    attempts = []
    waits = []

    def work(part: list[ConsumerRecord]) -> int:
        attempts.append(len(part))
        if len(attempts) <= 3:
            raise _wrapped(pg.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"))
        return len(part)

    gauge = metrics.DATABASE_BLOCKED.labels("unit-wait", "read_only")
    seen: list[float] = []

    def on_wait() -> None:
        waits.append(1)
        seen.append(gauge._value.get())

    guarded = asyncio.run(_guard("unit-wait", on_wait=on_wait).apply(_records([(0, b"a"), (1, b"b")]), work))
    assert attempts == [2, 2, 2, 2], "the whole batch each time: nothing is split or dropped"
    assert [n for _, n in guarded.results] == [2] and not guarded.poisoned and not guarded.stopped
    assert seen == [1.0, 1.0, 1.0] and gauge._value.get() == 0.0


def test_an_unknown_failure_repeated_stops_only_the_partition_it_comes_from() -> None:
    records = _records([(n % 2, b"stuck" if n == 4 else f"r{n}".encode()) for n in range(10)])
    work = _failing_on(lambda value: pg.InternalError_("XX000") if value == b"stuck" else None)
    guarded = asyncio.run(_guard("unit-stop").apply(records, work))
    assert guarded.stopped == {TopicPartition("t", 0): 0}, "partition 0 from its first record of the batch"
    applied = [value for _, values in guarded.results for value in values]
    assert applied == [r.value for r in records if r.partition == 1]
    assert not guarded.poisoned


def test_a_partition_stopped_part_way_keeps_what_was_applied_before_and_skips_what_follows() -> None:
    # A data error splits the batch; the later half of the same partition then fails for an unknown reason and the
    # partition stops at that half's first record: what came before it is applied, nothing after it.
    records = _records([(0, f"r{n}".encode()) for n in range(8)])
    records[1] = ConsumerRecord("t", 0, 1, 0, 0, None, b"data", None, 0, 4, [])
    records[6] = ConsumerRecord("t", 0, 6, 0, 0, None, b"stuck", None, 0, 5, [])

    def bad(value: bytes) -> Exception | None:
        return {b"data": pg.NumericValueOutOfRange("x"), b"stuck": pg.InternalError_("x")}.get(value)

    guarded = asyncio.run(_guard("unit-partway").apply(records, _failing_on(bad)))
    assert [p.record.offset for p in guarded.poisoned] == [1]
    applied = [value for _, values in guarded.results for value in values]
    assert applied == [b"r0", b"r2", b"r3"]
    assert guarded.stopped == {TopicPartition("t", 0): 4}


def test_a_thread_that_does_not_come_back_in_time_fails_the_batch_and_ends_in_a_stop() -> None:
    import threading

    release = threading.Event()

    def work(part: list[ConsumerRecord]) -> None:
        release.wait(10)

    async def run() -> object:
        try:
            return await BatchGuard("unit-timeout", timeout_s=0.2, sleep=_no_sleep).apply(_records([(0, b"x")]), work)
        finally:
            release.set()

    guarded = asyncio.run(run())
    assert guarded.stopped == {TopicPartition("t", 0): 0}  # type: ignore[attr-defined]
