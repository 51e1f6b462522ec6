"""Records taken from Kafka a batch at a time, handed to a handler, and their offsets committed after it.

Why not a faust stream: faust delivers one event at a time through its conductor, channels and stream
iterator, and that machinery alone costs more per event than the ledger's own work, where aiokafka's
`getmany` (the client faust itself runs on) hands over a whole batch at once. The ledger applies whole
batches in one transaction anyway, so the hot topics are consumed here, by a `mode.Service` that the faust
worker starts and stops with the app.

Exactly-once effect: offsets are committed only after the handler returned, that is after the batch's
transaction committed, and after the follow-up it may return (publishing the batch's results) finished.
A crash, a rebalance or a failed commit means the batch is delivered again, and the ledger's unique event
ids turn the replay into duplicates.

Stopping a partition: a handler that cannot apply a partition's records (its batch failed again and again for a
reason nobody knows how to handle, consumers.failures) calls `stop_partitions`: once the handler returns, the
partition is paused in this consumer (not the process: the other partitions go on), and its offset is committed
up to its first record not applied and no further. A restart, or a rebalance that hands the partition to another
member, starts it again from there.

Pipelining: a batch's follow-up runs while the next batch is taken and applied, so its broker round trips
are not paid between two transactions. Follow-ups run one at a time, in batch order, and offsets are
committed in the same order, so a crash at any point leaves nothing committed that was not published.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from consumers import metrics

log = logging.getLogger(__name__)

Records = Sequence[ConsumerRecord]
#: What is left to do for a batch once it is applied (publish its results); its offsets wait for it.
FollowUp = Coroutine[Any, Any, None]
#: Applies a batch; may answer a follow-up, which overlaps the next batch.
Handler = Callable[[Records], Awaitable[FollowUp | None]]


@dataclass(frozen=True)
class ConsumerSettings:
    bootstrap_servers: str
    group_id: str
    batch_size: int = 1000
    batch_within_s: float = 0.2
    session_timeout_s: float = 10.0
    #: How long a fetch may wait at the broker for records. Apache Kafka answers as soon as records arrive, so
    #: there this only sets how often an idle consumer asks again; Tansu keeps the fetch for the whole wait, so
    #: with aiokafka's default of 500 ms a record produced meanwhile waits up to that long to be delivered.
    fetch_max_wait_ms: int = 50
    #: How much a fetch waits for at the broker (up to `fetch_max_wait_ms`): 1 byte answers at once; more lets
    #: a consumer that need not be prompt take fewer, larger batches.
    fetch_min_bytes: int = 1
    #: How long a clean stop waits for the batch in hand before leaving the group anyway.
    stop_grace_s: float = 30.0


class BatchConsumer(Service):
    """One consumer-group member on `topics`: take up to `batch_size` records, `handle` them, commit.

    Records of one partition reach the handler in offset order; a batch may mix partitions.
    Settings suit Apache Kafka and Tansu alike (docs/design.md §6): a short session timeout, because a
    group join on Tansu waits about one of them, and a max poll interval near 30 s.
    """

    def __init__(self, name: str, topics: Sequence[str], settings: ConsumerSettings, handle: Handler,
                 on_crash: Callable[[BaseException], None] | None = None) -> None:
        """`on_crash` is called should the consuming loop end with an error (the worker exits on it)."""
        self.consumer_name = name
        self._on_crash = on_crash
        self._topics = list(topics)
        self._settings = settings
        self._handle = handle
        self._consumer: AIOKafkaConsumer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._to_stop: dict[TopicPartition, int] = {}
        #: Partitions paused after repeated failures, with the offset of the first record of each not applied.
        self.stopped: dict[TopicPartition, int] = {}
        super().__init__()

    @property
    def label(self) -> str:
        return f"BatchConsumer[{self.consumer_name}]"

    async def on_start(self) -> None:
        s = self._settings
        session_ms = int(s.session_timeout_s * 1000)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group_id,
            client_id=f"timecredits-{self.consumer_name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(1000, session_ms // 4),
            rebalance_timeout_ms=session_ms,
            max_poll_interval_ms=30_000,
            request_timeout_ms=max(40_000, session_ms + 10_000),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            fetch_min_bytes=s.fetch_min_bytes,
        )
        self._consumer.subscribe(self._topics, listener=_ForgetLagOfLostPartitions(self))
        await self._consumer.start()
        self._loop_task = asyncio.create_task(self._run(), name=self.label)
        self._loop_task.add_done_callback(self._on_loop_done)

    def stop_partitions(self, offsets: dict[TopicPartition, int]) -> None:
        """Stop consuming these partitions, each from the offset given (its first record not applied), once the
        handler in hand returns; called by the handler, its batch's offsets of them are not committed."""
        self._to_stop.update(offsets)

    def _apply_stops(self, consumer: AIOKafkaConsumer,
                     taken: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, list[ConsumerRecord]]:
        if not self._to_stop:
            return taken
        to_stop, self._to_stop = self._to_stop, {}
        assigned = consumer.assignment()
        for given, offset in to_stop.items():
            tp = TopicPartition(given.topic, given.partition)  # aiokafka's own type, which pause() insists on
            if tp in assigned:
                # No seek back: nothing of it is committed from `offset` on, and whoever takes it up next (this
                # process after a restart, or another member after a rebalance) starts at its committed offset.
                consumer.pause(tp)
            self.stopped[tp] = offset
        # The records of a stopped partition before its offset were applied: they are committed with the batch.
        stops = {(tp.topic, tp.partition): offset for tp, offset in to_stop.items()}
        kept = {tp: [record for record in batch if record.offset < stops.get((tp.topic, tp.partition), 1 << 62)]
                for tp, batch in taken.items()}
        return {tp: batch for tp, batch in kept.items() if batch}

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self._on_crash is not None:
            self._on_crash(task.exception())  # type: ignore[arg-type]

    async def on_stop(self) -> None:
        self._stopping = True
        if self._loop_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._loop_task), self._settings.stop_grace_s)
            except (TimeoutError, asyncio.CancelledError):
                self._loop_task.cancel()
            except Exception:  # noqa: BLE001 - the loop had crashed, and on_crash was told
                pass
        if self._consumer is not None:
            await self._consumer.stop()  # leaves the group, so its partitions move on at once

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        s = self._settings
        in_flight: _InFlight | None = None
        self._to_stop.clear()
        try:
            while not self._stopping:
                try:
                    taken = await consumer.getmany(timeout_ms=int(s.batch_within_s * 1000), max_records=s.batch_size)
                except KafkaError as exc:
                    # A failed group join or fetch (seen on Tansu as InconsistentGroupProtocol at start-up):
                    # aiokafka rejoins on the next call. Never let it end this loop, or the worker idles for good.
                    log.warning("%s: %s; trying again in 1 s", self.label, exc)
                    await asyncio.sleep(1.0)
                    continue
                if self.stopped:  # fetched before the pause took effect: they wait with their partition
                    taken = {tp: batch for tp, batch in taken.items() if tp not in self.stopped}
                records = [record for batch in taken.values() for record in batch]
                if not records:
                    await self._settle(consumer, in_flight)
                    in_flight = None
                    continue
                follow_up = await self._handle(records)
                taken = self._apply_stops(consumer, taken)
                try:
                    await self._settle(consumer, in_flight)
                except BaseException:
                    if follow_up is not None:
                        follow_up.close()  # never started: its batch is delivered again after the restart
                    raise
                in_flight = _InFlight(asyncio.ensure_future(follow_up) if follow_up is not None else None, taken)
        finally:
            if in_flight is not None:
                if self._stopping:
                    await self._settle(consumer, in_flight)  # a clean stop publishes and commits the last batch
                elif in_flight.follow_up is not None:
                    in_flight.follow_up.cancel()  # the loop failed: nothing more of this batch is committed

    async def _settle(self, consumer: AIOKafkaConsumer, in_flight: _InFlight | None) -> None:
        """Finish the previous batch: wait for its follow-up (raising what it raised), then commit its offsets."""
        if in_flight is None:
            return
        if in_flight.follow_up is not None:
            await in_flight.follow_up
        await self._commit(consumer, {tp: batch[-1].offset + 1 for tp, batch in in_flight.taken.items()})
        _record_lag(consumer, in_flight.taken)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:  # every record of the batch was of a partition stopped meanwhile
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance took the partitions away while the batch was in hand: their new owner gets the
            # batch again from the last committed offset, and the ledger sees duplicates. Nothing is lost.
            log.warning("%s: offsets not committed (%s); the batch will be delivered again", self.label, exc)


@dataclass(frozen=True)
class _InFlight:
    """A batch applied, whose follow-up may still run and whose offsets are not committed yet."""

    follow_up: asyncio.Future[None] | None
    taken: dict[TopicPartition, list[ConsumerRecord]]


class _ForgetLagOfLostPartitions(ConsumerRebalanceListener):  # type: ignore[misc]
    """A partition handed to another worker is that worker's to report: drop its lag series here, and forget it
    was stopped (whoever owns it next starts it from its committed offset, and stops it again should it fail)."""

    def __init__(self, owner: BatchConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            try:
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass
            if self._owner.stopped.pop(tp, None) is not None:
                try:
                    metrics.PARTITION_STOPPED.remove(self._owner.consumer_name, tp.topic, str(tp.partition))
                except KeyError:
                    pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        pass


def _record_lag(consumer: AIOKafkaConsumer, taken: dict[TopicPartition, list[ConsumerRecord]]) -> None:
    """Consumer lag per partition: the broker's high-water mark minus the next offset to process. A partition a
    rebalance took away while the batch was in hand is its new owner's to report (`_ForgetLagOfLostPartitions`),
    and asking for its high-water mark would fail the loop."""
    assigned = consumer.assignment()
    for tp, batch in taken.items():
        if tp not in assigned:
            continue
        highwater = consumer.highwater(tp)
        if highwater is not None:
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - batch[-1].offset - 1))
