"""Helpers for outage tests: services of a test's own that it may stop, freeze and restart without disturbing the
session's shared PostgreSQL and broker, and small readers of what the worker left behind."""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from infra.embedded import EmbeddedBroker, EmbeddedPostgres
from infra.migrate import upgrade_to_head
from ledger.events import TOPIC_REJECTED
from tests.e2e.conftest import Stack
from tests.e2e.stack import wait_until
from timecredits.processes import Child


class RestartablePostgres(EmbeddedPostgres):
    """An embedded PostgreSQL that can be shut down and started again on the same port, as an operator's
    restart (or a managed database's failover to the same address) would do: clients keep their URL.

    It drives pg_ctl through the base class's internals, since `start()` always picks a new free port."""

    def shut_down(self) -> None:
        """`pg_ctl stop -m fast`: open transactions are rolled back and every connection is closed."""
        pid, port = self.pid, self.port
        assert pid is not None
        self._run("pg_ctl", ["stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60"])
        self._pid = None
        wait_until(lambda: not _accepts(port), 30, "the stopped PostgreSQL to refuse connections", interval=0.05)

    def start_again(self) -> None:
        """`pg_ctl start` on the port it had before (start() would pick a new free port)."""
        assert self._port is not None and self._pid is None
        socket_dir = self._tmp_socket_dir or self.pgdata
        self._run("pg_ctl", ["start", "-w", "-t", "60", "-D", str(self.pgdata), "-l", str(self.log_path),
                             "-o", self._server_options(self._port, socket_dir)])
        self._pid = self._postmaster_pid()
        self._wait_until_ready()


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def own_postgres(tmp: Path) -> Iterator[RestartablePostgres]:
    """A PostgreSQL of the test's own, its `timecredits` database migrated to head."""
    server = RestartablePostgres(tmp / "own-pg", durable=False)
    server.start()
    try:
        upgrade_to_head(server.url)
        yield server
    finally:
        server.stop()


class FreezableBroker(EmbeddedBroker):
    """An embedded broker that can be made unreachable without losing its (memory) storage: SIGSTOP freezes the
    process, so connections are accepted by the kernel but nothing is answered, as with a hung or partitioned
    broker; SIGCONT lets it carry on with everything it had."""

    def freeze(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.thaw()  # a stopped process does not act on SIGTERM
        super().stop()


@contextmanager
def own_broker(tmp: Path) -> Iterator[FreezableBroker]:
    broker = FreezableBroker(tmp / "own-broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def counter(metrics_text: str, name: str) -> float:
    """A Prometheus counter's value, summed over its samples, with or without labels (0 when absent)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def dead_letters(stack: Stack, expected: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The dead letters on the stack's `tc.rejected`, read from the start until `expected` distinct source records
    are covered or `timeout` seconds have passed (the caller compares what came). A replayed batch may publish a
    dead letter twice: delivery is at least once."""
    consumer = KafkaConsumer(stack.topic(TOPIC_REJECTED), bootstrap_servers=stack.bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000,
                             fetch_max_bytes=8 * 1024 * 1024, max_partition_fetch_bytes=4 * 1024 * 1024)
    letters: list[dict[str, Any]] = []
    sources: set[tuple[str, int, int]] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(sources) < expected and time.monotonic() < deadline:
            for message in consumer:
                letter = json.loads(message.value)
                letters.append(letter)
                source = letter["source"]
                sources.add((source["topic"], source["partition"], source["offset"]))
    finally:
        consumer.close()
    return letters


def wait_for_exit_or(predicate: Callable[[], object], process: Child, timeout: float, what: str) -> None:
    """`wait_until(predicate)`, failing at once with the process's log if it exits meanwhile."""
    def check() -> bool:
        if not process.alive:
            raise AssertionError(f"{process.name} exited with {process.process.returncode} while waiting for "
                                 f"{what}:\n{process.log_tail()}")
        return bool(predicate())

    wait_until(check, timeout, what)


class Background:
    """A function run in a thread whose exception, if any, is raised again by `join()`."""

    def __init__(self, target: Callable[..., object], *args: object) -> None:
        self._error: BaseException | None = None

        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the joining thread
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 600) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the background work did not finish"
        if self._error is not None:
            raise self._error
