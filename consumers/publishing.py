"""What a worker publishes after each batch (entries on `tc.ledger`, dead letters on `tc.rejected`), a
partition's records in one Kafka record batch.

Why not one `send()` a record: for each record aiokafka's `send` (and faust's wrapper around it) looks up the
metadata, hashes the key with its pure-Python murmur2 and makes a future, and the accumulator makes another,
work a busy worker repeated for every entry it published. Here the records of a call are grouped by
partition, appended to a batch builder each and handed over one future a batch. Keys are partitioned exactly
as the default partitioners of aiokafka and kafka-python do it (murmur2 of the key, modulo the partition count),
with the hash cached per key, so a volunteer's entries land where any other client would put them, in order.

Records of one partition keep their order: builders are submitted in order, and the producer sends one batch
of a partition at a time. `publish` returns when the broker acknowledged every record (acks=all).
"""
from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from functools import lru_cache

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from mode import Service

#: How long a published batch is retried before it fails (and the worker exits, to replay the batch).
PUBLISH_TIMEOUT_MS = 20 * 60 * 1000

#: (key, value); a record without a key goes to a partition chosen at random, as with the default partitioner.
Record = tuple[bytes | None, bytes]


class BatchPublisher(Service):
    def __init__(self, bootstrap_servers: str, client_id: str, *, linger_ms: int = 5,
                 max_batch_bytes: int = 1024 * 1024) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._client_id = client_id
        self._linger_ms = linger_ms
        self._max_batch_bytes = max_batch_bytes
        self._producer: AIOKafkaProducer | None = None
        super().__init__()

    async def on_start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            acks="all",
            linger_ms=self._linger_ms,
            max_batch_size=self._max_batch_bytes,
            max_request_size=max(self._max_batch_bytes, 1024 * 1024),
            # faust's producer default, which published these results before: while the broker is away a batch
            # is retried for up to 20 minutes (the worker waits, as it waits for PostgreSQL) rather than expiring
            # after aiokafka's 40 s and ending the worker.
            request_timeout_ms=PUBLISH_TIMEOUT_MS,
        )
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()  # sends what is buffered first
            self._producer = None

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        """Send `records` to `topic`, each to its key's partition; return once the broker has them all."""
        if not records:
            return
        producer = self._producer
        if producer is None:
            raise RuntimeError("the publisher is not started")
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            by_partition.setdefault(partition_of(record[0], partitions), []).append(record)
        delivered = []
        for partition, batch in by_partition.items():
            for builder in _builders(producer, batch):
                delivered.append(await producer.send_batch(builder, topic, partition=partition))
        await asyncio.gather(*delivered)


def partition_of(key: bytes | None, partitions: Sequence[int]) -> int:
    """The partition the default partitioner gives `key` among `partitions` (sorted ids)."""
    if key is None:
        return random.choice(partitions)
    return partitions[_positive_murmur2(key) % len(partitions)]


@lru_cache(maxsize=1 << 17)
def _positive_murmur2(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def _builders(producer: AIOKafkaProducer, records: Sequence[Record]) -> list:  # type: ignore[type-arg]
    """`records` in as few batch builders as the batch size allows, in order."""
    builders = [producer.create_batch()]
    for key, value in records:
        if builders[-1].append(key=key, value=value, timestamp=None) is None:
            builders.append(producer.create_batch())
            if builders[-1].append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in a batch")
    return builders
