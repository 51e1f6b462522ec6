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

from consumers.batches import BatchConsumer, ConsumerSettings, FollowUp
from tests.broker_helpers import new_topic

pytestmark = [pytest.mark.integration, pytest.mark.broker]

PARTITIONS = 4


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
        consumer = BatchConsumer("test", [topic], ConsumerSettings(kafka_bootstrap, group, batch_size=100), handle)
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
        consumer = BatchConsumer("test", [topic], ConsumerSettings(kafka_bootstrap, group, batch_size=50), handle,
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
