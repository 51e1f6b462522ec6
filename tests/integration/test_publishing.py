"""The worker's publisher (consumers/publishing.py) against a real Kafka-protocol broker (never a mock): every
record delivered once, on the partition any default partitioner gives its key, in order within the partition,
also when a partition's records need several record batches."""
from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import KafkaConsumer
from kafka.partitioner.default import DefaultPartitioner

from consumers.publishing import BatchPublisher, partition_of
from tests.broker_helpers import new_topic

PARTITIONS = 4


class _Cluster:
    """The little of kafka-python's cluster metadata its partitioner reads: one topic of `count` partitions."""

    def __init__(self, count: int) -> None:
        self._partitions = set(range(count))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


def kafka_python_partition(key: bytes, count: int) -> int:
    """Where kafka-python's default partitioner, the one the API and the producers use, puts `key`."""
    return int(DefaultPartitioner().partition("t", key, key, None, None, _Cluster(count)))


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_a_key_gets_the_partition_kafka_pythons_default_partitioner_gives_it(key: bytes, count: int) -> None:
    assert partition_of(key, list(range(count))) == kafka_python_partition(key, count)


@pytest.mark.integration
@pytest.mark.broker
@pytest.mark.parametrize("max_batch_bytes", [1024 * 1024, 2048])
def test_every_record_once_on_its_keys_partition_in_order(kafka_bootstrap: str, max_batch_bytes: int) -> None:
    topic = new_topic(kafka_bootstrap, "test-publishing", PARTITIONS)
    records = [(f"v{n % 37}".encode(), f"{n}:{'x' * (n % 200)}".encode()) for n in range(3_000)]
    records += [(None, b"unkeyed-1"), (None, b"unkeyed-2")]

    async def publish() -> None:
        publisher = BatchPublisher(kafka_bootstrap, "test-publisher", max_batch_bytes=max_batch_bytes)
        await publisher.start()
        try:
            await publisher.publish(topic, records[:1_000])
            await publisher.publish(topic, records[1_000:])
            await publisher.publish(topic, [])
        finally:
            await publisher.stop()

    asyncio.run(publish())
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3_000)
    try:
        received = [(message.partition, message.key, message.value) for message in consumer]
    finally:
        consumer.close()
    assert sorted((key or b"", value) for _, key, value in received) == sorted((k or b"", v) for k, v in records)
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for partition, key, value in received:
        if key is not None:
            assert partition == kafka_python_partition(key, PARTITIONS)
            by_partition[partition].append(value)
    expected: dict[int, list[bytes]] = defaultdict(list)
    for key, value in records:
        if key is not None:
            expected[partition_of(key, list(range(PARTITIONS)))].append(value)
    assert by_partition == expected  # the order of publishing, within each partition
    assert len(by_partition) == PARTITIONS
