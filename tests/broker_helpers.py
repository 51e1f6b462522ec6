"""Helpers for tests that talk to the real broker."""
from __future__ import annotations

import uuid

from kafka import KafkaAdminClient
from kafka.admin import NewTopic


def new_topic(bootstrap: str, prefix: str, partitions: int) -> str:
    """A topic of the test's own, with `partitions` partitions (topics are never created by a first use)."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()
    return topic
