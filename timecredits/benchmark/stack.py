"""The stack a benchmark runs on: one PostgreSQL server and one broker (embedded unless configured), a database
and a topic prefix of each scenario's own, worker and API processes started and stopped by the benchmark."""
from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from infra.migrate import upgrade_to_head
from producers.kafka import ALL_TOPICS, EventProducer, ensure_topics, prefixed
from timecredits.benchmark.workload import Record
from timecredits.processes import Child

PARTITIONS = 4


@dataclass
class Scenario:
    """A database and topics of one scenario's own on the shared servers."""

    name: str
    server_url: str
    bootstrap: str
    directory: Path
    database_url: str = ""
    prefix: str = ""
    engine: Engine = field(init=False)
    children: list[Child] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "TIMECREDITS_TOPIC_PREFIX": self.prefix,
            "TIMECREDITS_TOPIC_PARTITIONS": str(PARTITIONS),
            "TIMECREDITS_DATA_DIR": str(self.directory / self.name),
        }

    def start_workers(self, count: int) -> list[Child]:
        """`count` ledger workers, and the statistics in a process of their own (`timecredits worker --only`)."""
        workers = [Child(f"worker-{n}", ["worker", "--only", "ledger"], self.env(),
                         self.directory / self.name / f"worker-{n}.log") for n in range(count)]
        workers.append(Child("statistics", ["worker", "--only", "statistics"], self.env(),
                             self.directory / self.name / "statistics.log"))
        self.children.extend(workers)
        return workers

    def start_api(self, admin_token: str, workers: int = 1, env: dict[str, str] | None = None) -> str:
        """`timecredits api` on a free port with `workers` processes (and `env` on top of the scenario's), once
        it answers `/readyz`; its URL."""
        port = free_port()
        api = Child("api", ["api", "--port", str(port), "--workers", str(workers)],
                    {**self.env(), "TIMECREDITS_ADMIN_TOKEN": admin_token, **(env or {})},
                    self.directory / self.name / "api.log")
        self.children.append(api)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not api.alive:
                raise RuntimeError(f"the API exited:\n{api.log_tail()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not answer /readyz in 60 s:\n{api.log_tail()}")

    def producer(self, **overrides: object) -> EventProducer:
        # Large batches and a little linger: the benchmark measures the ledger, not the producer's round trips.
        options: dict[str, object] = {"linger_ms": 10, "batch_size": 512 * 1024, **overrides}
        return EventProducer(self.bootstrap, topic_prefix=self.prefix, **options)  # type: ignore[arg-type]

    def send(self, producer: EventProducer, record: Record) -> None:
        producer.send_raw(self.prefix + record.topic, record.key, record.value)

    def decided(self) -> int:
        """Entries plus rejections: each activity event of the workload ends as exactly one of the two.

        Entries are counted by their batch links (one row a batch and chain, each with its entry count), not by a
        count(*) of the ledger: the benchmark asks twenty times a second, and counting every entry would take CPU
        from the PostgreSQL it measures. A link commits with its entries, so the sum is exact at every moment,
        whichever order concurrent workers commit in. Rejections are a few per cent of the events, cheap to count.
        """
        with self.engine.connect() as conn:
            entries = int(conn.execute(text("SELECT coalesce(sum(entry_count), 0) FROM chain_links")).scalar_one())
            rejections = int(conn.execute(text("SELECT count(*) FROM rejections")).scalar_one())
        return entries + rejections

    def members(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM memberships")).scalar_one())

    def volunteers(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM volunteers")).scalar_one())

    def stop_children(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


@contextmanager
def scenario(name: str, server_url: str, bootstrap: str, directory: Path) -> Iterator[Scenario]:
    """A fresh migrated database and fresh topics; children stopped and the database dropped afterwards."""
    run = Scenario(name, server_url, bootstrap, directory)
    database = f"tc_bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_size=1)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    run.database_url = make_url(server_url).set(database=database).render_as_string(hide_password=False)
    run.prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}."
    try:
        upgrade_to_head(run.database_url)
        ensure_topics(bootstrap, PARTITIONS, prefixed(ALL_TOPICS, run.prefix))
        run.engine = create_engine(run.database_url, pool_size=2)
        yield run
    finally:
        run.stop_children()
        if hasattr(run, "engine"):
            run.engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def wait_for(predicate, timeout: float, what: str, children: list[Child], interval: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        for child in children:
            if not child.alive:
                raise RuntimeError(f"{child.name} exited while waiting for {what}:\n{child.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
