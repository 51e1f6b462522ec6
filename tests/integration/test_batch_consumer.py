"""The worker's batch consumer (consumers/batches.py) against a real Kafka-protocol broker (never a mock):
every record handled once and in partition order, a batch's follow-up overlapping the next batch, and offsets
committed only once the follow-up is done."""
from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import ConsumerRecord
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumers.batches import BatchConsumer, ConsumerSettings, FollowUp, Handler
from consumers.publishing import partition_of
from tests.broker_helpers import new_topic

pytestmark = [pytest.mark.integration, pytest.mark.broker]

PARTITIONS = 4
#: A group join on Tansu waits about one session timeout: 3 s rather than the 10 s default at every join.
SESSION_TIMEOUT_S = 3.0


def _topic_with(bootstrap: str, count: int) -> str:
    topic = new_topic(bootstrap, "test-batches", PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for n in range(count):
        producer.send(topic, key=f"k{n % 13}".encode(), value=str(n).encode())
    producer.flush()
    producer.close()
    return topic


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)}
    finally:
        consumer.close()


def test_every_record_once_in_partition_order_follow_ups_overlapping_the_next_batch(kafka_bootstrap: str) -> None:
    total = 1_500
    topic = _topic_with(kafka_bootstrap, total)
    group = f"g-{uuid.uuid4().hex[:8]}"
    batches: list[list[ConsumerRecord]] = []
    followed: list[int] = []
    all_seen = asyncio.Event()

    async def handle(records: list[ConsumerRecord]) -> FollowUp:
        batches.append(list(records))
        index = len(batches) - 1
        if sum(len(b) for b in batches) >= total:
            all_seen.set()

        async def follow_up() -> None:
            # Waits for the next batch to be handled: were follow-ups not overlapping it, this would never end.
            while len(batches) <= index + 1 and not all_seen.is_set():
                await asyncio.sleep(0.005)
            assert followed == list(range(index)), "follow-ups run one at a time, in batch order"
            followed.append(index)

        return follow_up()

    async def run() -> None:
        consumer = BatchConsumer("test", [topic], ConsumerSettings(kafka_bootstrap, group, batch_size=100,
                                                                   session_timeout_s=SESSION_TIMEOUT_S), handle)
        await consumer.start()
        try:
            await asyncio.wait_for(all_seen.wait(), 60)
        finally:
            await consumer.stop()

    asyncio.run(run())
    records = [r for batch in batches for r in batch]
    assert sorted(int(r.value) for r in records) == list(range(total))  # each once
    by_partition: dict[int, list[int]] = defaultdict(list)
    for record in records:
        by_partition[record.partition].append(record.offset)
    assert all(offsets == sorted(offsets) for offsets in by_partition.values())
    assert len(batches) > 1 and all(len(batch) <= 100 for batch in batches)
    assert followed == list(range(len(batches)))  # the clean stop finished the last follow-up
    # Everything handled was committed by the clean stop: each partition up to the record after its last.
    assert _committed(kafka_bootstrap, group, topic) == {p: max(by_partition[p], default=-1) + 1
                                                          for p in range(PARTITIONS)}


def test_a_failed_follow_up_commits_nothing_of_its_batch_and_stops_the_loop(kafka_bootstrap: str) -> None:
    topic = _topic_with(kafka_bootstrap, 400)
    group = f"g-{uuid.uuid4().hex[:8]}"
    batches: list[list[ConsumerRecord]] = []
    crashed: list[BaseException] = []

    async def handle(records: list[ConsumerRecord]) -> FollowUp:
        batches.append(list(records))
        failing = len(batches) == 2

        async def follow_up() -> None:
            if failing:
                raise RuntimeError("publishing failed")

        return follow_up()

    async def run() -> None:
        consumer = BatchConsumer("test", [topic], ConsumerSettings(kafka_bootstrap, group, batch_size=50,
                                                                   session_timeout_s=SESSION_TIMEOUT_S), handle,
                                 on_crash=crashed.append)
        await consumer.start()
        try:
            for _ in range(600):
                if crashed:
                    break
                await asyncio.sleep(0.05)
        finally:
            await consumer.stop()

    asyncio.run(run())
    assert [str(e) for e in crashed] == ["publishing failed"]
    first = {p: 0 for p in range(PARTITIONS)}
    for record in batches[0]:
        first[record.partition] = max(first[record.partition], record.offset + 1)
    # The first batch's follow-up succeeded, so its offsets were committed; nothing after it was.
    assert _committed(kafka_bootstrap, group, topic) == first


def test_a_stopped_partition_is_paused_from_its_offset_and_the_others_go_on(kafka_bootstrap: str) -> None:
    """A handler stops a partition at a record it cannot apply: nothing of that partition from there on is handed
    over or committed, the other partitions are consumed to the end, and a new member starts it from there."""
    total = 800
    topic = _topic_with(kafka_bootstrap, total)
    counts = {p: 0 for p in range(PARTITIONS)}  # where the default partitioner put each key
    for n in range(total):
        counts[partition_of(f"k{n % 13}".encode(), list(range(PARTITIONS)))] += 1
    group = f"g-{uuid.uuid4().hex[:8]}"
    seen: list[ConsumerRecord] = []
    stop_at = 7
    victim = max(counts, key=counts.__getitem__)
    assert counts[victim] > stop_at, counts
    consumer: BatchConsumer | None = None

    async def handle(records: list[ConsumerRecord]) -> None:
        assert consumer is not None
        for record in records:
            if record.partition == victim and record.offset >= stop_at:
                consumer.stop_partitions({TopicPartition(topic, victim): stop_at})
                continue
            seen.append(record)

    async def run() -> None:
        nonlocal consumer
        consumer = BatchConsumer("test", [topic], ConsumerSettings(kafka_bootstrap, group, batch_size=30,
                                                                   session_timeout_s=SESSION_TIMEOUT_S), handle)
        await consumer.start()
        try:
            for _ in range(600):
                if len(seen) >= total - (counts[victim] - stop_at):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # a record of the stopped partition handed over late would show up now
            stopped.update(consumer.stopped)
        finally:
            await consumer.stop()  # leaving the group, it forgets the stop: the next owner starts it again

    stopped: dict[TopicPartition, int] = {}
    asyncio.run(run())
    assert stopped == {TopicPartition(topic, victim): stop_at}
    assert sorted(r.offset for r in seen if r.partition == victim) == list(range(stop_at))
    assert len(seen) == len({(r.partition, r.offset) for r in seen}), "each record once"
    committed = _committed(kafka_bootstrap, group, topic)
    assert committed == {**counts, victim: stop_at}

    # A new member of the group takes the stopped partition up at its offset.
    again: list[ConsumerRecord] = []

    async def handle_again(records: list[ConsumerRecord]) -> None:
        again.extend(records)

    async def resume() -> None:
        member = BatchConsumer("test", [topic], ConsumerSettings(kafka_bootstrap, group, batch_size=30,
                                                                 session_timeout_s=SESSION_TIMEOUT_S), handle_again)
        await member.start()
        try:
            for _ in range(600):
                if len(again) >= counts[victim] - stop_at:
                    break
                await asyncio.sleep(0.05)
        finally:
            await member.stop()

    asyncio.run(resume())
    assert sorted((r.partition, r.offset) for r in again) == [
        (victim, offset) for offset in range(stop_at, counts[victim])]


def test_a_member_whose_partitions_move_while_it_holds_a_batch_carries_on(kafka_bootstrap: str) -> None:
    """A second member joins while the first has a batch in hand (its follow-up waits for the join): the first's
    commit is refused for the partitions it lost, their new owner gets those records again, and the first carries
    on with the partitions it kept, rather than stopping on a partition no longer its own."""
    total = 400
    topic = _topic_with(kafka_bootstrap, total)
    group = f"g-{uuid.uuid4().hex[:8]}"
    seen: dict[str, list[tuple[int, int]]] = {"first": [], "second": []}
    held: list[tuple[int, int]] = []
    crashed: list[BaseException] = []

    async def run() -> None:
        joined = asyncio.Event()

        async def handle_first(records: list[ConsumerRecord]) -> FollowUp:
            seen["first"].extend((r.partition, r.offset) for r in records)
            holding = not held
            if holding:
                held.extend((r.partition, r.offset) for r in records)

            async def follow_up() -> None:
                if holding:  # the batch stays in hand, uncommitted, until the other member has partitions
                    await asyncio.wait_for(joined.wait(), 60)

            return follow_up()

        async def handle_second(records: list[ConsumerRecord]) -> FollowUp | None:
            seen["second"].extend((r.partition, r.offset) for r in records)
            joined.set()
            return None

        def member(handle: Handler) -> BatchConsumer:
            return BatchConsumer("test", [topic], ConsumerSettings(kafka_bootstrap, group, batch_size=total,
                                                                   session_timeout_s=SESSION_TIMEOUT_S),
                                 handle, on_crash=crashed.append)

        first = member(handle_first)
        await first.start()
        second: BatchConsumer | None = None
        try:
            for _ in range(600):
                if held and second is None:
                    second = member(handle_second)
                    await second.start()
                if crashed or {*seen["first"], *seen["second"]} == {(p, o) for p in range(PARTITIONS)
                                                                   for o in range(_count(p, total))}:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # a crash after the last records would show up now
        finally:
            if second is not None:
                await second.stop()
            await first.stop()

    asyncio.run(run())
    assert crashed == [], crashed
    moved = {p for p, _ in seen["second"]}
    assert moved and moved & {p for p, _ in held}, "the batch in hand had records of a partition that moved"
    assert {*seen["first"], *seen["second"]} == {(p, o) for p in range(PARTITIONS) for o in range(_count(p, total))}
    assert set(held) & set(seen["second"]), "the new owner got records of the uncommitted batch again"


def _count(partition: int, total: int) -> int:
    """Records `_topic_with` put on `partition`."""
    return sum(partition_of(f"k{n % 13}".encode(), list(range(PARTITIONS))) == partition for n in range(total))
