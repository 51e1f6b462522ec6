"""Helpers for end-to-end tests: worker processes, waiting, and looking at outcomes in the database."""
from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine, text

from ledger.pg.processing import count_decided
from timecredits.processes import Child

if TYPE_CHECKING:
    from tests.e2e.conftest import Stack


class WorkerProcess(Child):
    """`timecredits worker` as a child process with its own log file, stopped by its pid."""

    def __init__(self, env: dict[str, str], log_path: Path, metrics_port: int | None = None,
                 only: str | None = None) -> None:
        self.metrics_port = metrics_port
        extra = {"TIMECREDITS_WORKER_METRICS_PORT": str(metrics_port)} if metrics_port else {}
        super().__init__("worker", ["worker", *(["--only", only] if only else [])], {**env, **extra}, log_path)

    def stop(self, timeout: float = 60) -> int | None:
        return super().stop(timeout)

    def metrics_text(self) -> str:
        assert self.metrics_port
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        except OSError:  # not serving yet (still starting) or gone
            return ""

    def metric(self, name: str) -> float:
        """Sum of a Prometheus counter's samples, scraped from the worker's /metrics."""
        body = self.metrics_text()
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name + "{"))


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def decided_count(engine: Engine, event_ids: Iterable[UUID]) -> int:
    """How many of the events the worker has processed (applied or rejected)."""
    return count_decided(engine, list(event_ids))


def ledger_summary(engine: Engine) -> dict[str, Any]:
    """What two runs must agree on: entries by kind, rejections by reason, every balance."""
    with engine.connect() as conn:
        return {
            "entries": dict(conn.execute(text("SELECT kind, count(*) FROM entries GROUP BY kind")).all()),
            "rejections": dict(conn.execute(text("SELECT reason, count(*) FROM rejections GROUP BY reason")).all()),
            "balances": dict(conn.execute(text("SELECT account_key, balance FROM balances")).all()),
            "hours_logs": conn.execute(text("SELECT count(*) FROM hours_logs")).scalar(),
        }


def topic_records(stack: Stack, logical: str) -> list[bytes]:
    """Every record of the topic, from its first offset to its end."""
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=5000)
    try:
        topic = stack.topic(logical)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        assert partitions, f"no partitions for {topic}"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        while any(consumer.position(p) < ends[p] for p in partitions):
            for batch in consumer.poll(timeout_ms=2000, max_records=5000).values():
                values += [record.value for record in batch]
        return values
    finally:
        consumer.close()
