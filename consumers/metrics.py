"""Prometheus metrics of the ledger worker (served on TIMECREDITS_WORKER_METRICS_PORT when set)."""
from __future__ import annotations

import os
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from ledger.events import DecodedEvent, Undecodable
from ledger.pg.processing import BatchResult

EVENTS_APPLIED = Counter("timecredits_events_applied_total", "Events applied", ["type"])
EVENTS_REJECTED = Counter("timecredits_events_rejected_total", "Events rejected", ["type", "reason"])
EVENTS_DUPLICATE = Counter("timecredits_events_duplicate_total", "Events delivered again and ignored", ["type"])
BATCH_SIZE = Histogram(
    "timecredits_batch_size", "Events in a batch", ["topic"], buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
)
BATCH_SECONDS = Histogram("timecredits_batch_seconds", "Time to apply and commit a batch", ["topic"])
CONSUMER_LAG = Gauge("timecredits_consumer_lag", "Messages behind the partition's high-water mark", ["topic", "partition"])
DATABASE_RETRIES = Counter("timecredits_database_retries_total", "Batches retried because PostgreSQL was unavailable")
#: 1 while a consumer waits for PostgreSQL to take writes again (reason: read_only, disk_full, insufficient_resources).
DATABASE_BLOCKED = Gauge("timecredits_database_blocked", "1 while the database refuses the consumer's writes",
                         ["consumer", "reason"])
BATCH_FAILURES = Counter("timecredits_batch_failures_total", "Failed attempts to apply a batch or part of one",
                         ["consumer", "verdict", "reason"])
DEAD_LETTERED = Counter("timecredits_records_dead_lettered_total",
                        "Records that failed on their own and were sent to tc.rejected", ["consumer", "reason"])
#: 1 for a partition a consumer stopped because its batch failed again and again for an unknown reason.
PARTITION_STOPPED = Gauge("timecredits_partition_stopped", "1 while a partition is stopped after repeated failures",
                          ["consumer", "topic", "partition"])


def observe_batch(topic: str, result: BatchResult, items: Sequence[DecodedEvent | Undecodable], seconds: float) -> None:
    BATCH_SIZE.labels(topic).observe(len(items))
    BATCH_SECONDS.labels(topic).observe(seconds)
    for item, outcome in zip(items, result.outcomes):
        kind = item.type or "unknown"
        if outcome.duplicate:
            EVENTS_DUPLICATE.labels(kind).inc()
        elif outcome.applied:
            EVENTS_APPLIED.labels(kind).inc()
        else:
            EVENTS_REJECTED.labels(kind, outcome.reason or "unknown").inc()


def start_server_from_env() -> None:
    port = os.environ.get("TIMECREDITS_WORKER_METRICS_PORT")
    if port:
        start_http_server(int(port), addr=os.environ.get("TIMECREDITS_WORKER_METRICS_HOST", "127.0.0.1"))
