"""End-to-end fixtures: a fresh database on the primary PostgreSQL, a real broker, topics of the test's own."""
from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from producers.kafka import ALL_TOPICS, EventProducer, ensure_topics, prefixed
from tests.e2e.stack import WorkerProcess
from tests.postgres import fresh_database

PARTITIONS = 4
#: The workers' consumer-group session timeout in these tests. A group join on Tansu waits about one session
#: timeout, and a killed member holds its partitions for one: the product's 10 s default would be paid at every
#: worker start and every kill. 3 s keeps three heartbeats (1 s apart) within a session.
WORKER_SESSION_TIMEOUT_S = "3"


@dataclass
class Stack:
    database_url: str
    engine: Engine
    bootstrap: str
    prefix: str
    tmp: Path
    workers: list[WorkerProcess]

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "TIMECREDITS_TOPIC_PREFIX": self.prefix,
            "TIMECREDITS_TOPIC_PARTITIONS": str(PARTITIONS),
            "TIMECREDITS_DATA_DIR": str(self.tmp / "worker-data"),
            "TIMECREDITS_BATCH_SIZE": "500",
            "TIMECREDITS_WORKER_SESSION_TIMEOUT": WORKER_SESSION_TIMEOUT_S,
        }

    def start_worker(self, metrics: bool = False, only: str | None = None) -> WorkerProcess:
        port = free_port() if metrics else None
        worker = WorkerProcess(self.env(), self.tmp / f"worker-{len(self.workers)}.log", port, only)
        self.workers.append(worker)
        return worker

    def producer(self) -> EventProducer:
        return EventProducer(self.bootstrap, topic_prefix=self.prefix)

    def topic(self, logical: str) -> str:
        return self.prefix + logical


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def stack_on(database_url: str, bootstrap: str, tmp: Path) -> Iterator[Stack]:
    """A `Stack` on the given database and broker, with topics of its own; its workers are stopped at the end.

    The engine pre-pings: the outage tests restart PostgreSQL under it."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(bootstrap, PARTITIONS, prefixed(ALL_TOPICS, prefix))
    engine = create_engine(database_url, pool_pre_ping=True)
    stack = Stack(database_url, engine, bootstrap, prefix, tmp, [])
    try:
        yield stack
    finally:
        for worker in stack.workers:
            worker.stop()
        engine.dispose()


def _make_stack(embedded_postgres: str, template: str, bootstrap: str, tmp: Path) -> Iterator[Stack]:
    with fresh_database(embedded_postgres, template) as url, stack_on(url, bootstrap, tmp) as stack:
        yield stack


@pytest.fixture()
def stack(embedded_postgres: str, primary_template: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    yield from _make_stack(embedded_postgres, primary_template, kafka_bootstrap, tmp_path)


@pytest.fixture(scope="module")
def shared_stack(
    embedded_postgres: str, primary_template: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One database, topic set and running worker for a module's tests, which use disjoint ids."""
    for stack in _make_stack(embedded_postgres, primary_template, kafka_bootstrap, tmp_path_factory.mktemp("stack")):
        stack.start_worker()
        yield stack


StackFactory = Callable[[], Stack]
