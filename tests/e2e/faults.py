"""Helpers for outage tests: services of a test's own that it may stop, freeze and restart without disturbing the
session's shared PostgreSQL and broker, and small readers of what the worker left behind."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from kafka import KafkaConsumer
from sqlalchemy import Engine, create_engine, text

from infra.embedded import POSTGRES_BIN_PATH, EmbeddedBroker, EmbeddedPostgres, ensure_user_exists
from infra.migrate import upgrade_to_head
from ledger.events import TOPIC_ACTIVITY, TOPIC_REJECTED
from ledger.pg.verify import verify_ledger
from tests.e2e.conftest import Stack
from tests.e2e.stack import wait_until
from timecredits.processes import Child


P = TypeVar("P", bound=EmbeddedPostgres)

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
    yield from _migrated(RestartablePostgres(tmp / "own-pg", durable=False))


def _migrated(server: P) -> Iterator[P]:
    """`server` started, its `timecredits` database migrated to head; stopped afterwards."""
    server.start()
    try:
        upgrade_to_head(server.url)
        yield server
    finally:
        server.stop()


class SmallDiskPostgres(EmbeddedPostgres):
    """An embedded PostgreSQL whose tables and indexes live in a tablespace on a filesystem of `size` of the
    server's own (a tmpfs in a mount namespace of its own: tests/e2e/small_disk.py, no root needed), while its WAL
    and catalogs stay on the ordinary disk. `fill()` takes every byte left on it, as a data volume filled by
    something else would be: PostgreSQL then refuses to extend a table with SQLSTATE 53100 (disk_full), and
    nothing else breaks (a full WAL volume would stop the server instead). `free()` gives the space back."""

    TABLESPACE = "small_disk"

    def __init__(self, data_dir: Path, size: str = "64m") -> None:
        super().__init__(data_dir, durable=False)
        self.size = size
        self.mount_point = self.data_dir / "small-disk"
        self._launcher = self.data_dir / "postgres-on-a-small-disk"
        self._python = _python_for(self._system_user)

    def start(self) -> None:
        self.mount_point.mkdir(parents=True, exist_ok=True)
        launch = [self._python, str(SMALL_DISK), "run", str(self.mount_point), self.size,
                  str(POSTGRES_BIN_PATH / "postgres")]
        self._launcher.write_text("#!/bin/sh\nexec " + shlex.join(launch) + ' "$@"\n')
        self._launcher.chmod(0o755)
        self.mount_point.chmod(0o755)
        super().start()
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f"CREATE TABLESPACE {self.TABLESPACE} LOCATION '{self.mount_point}'"))
                # For the sessions to come, the migrations' first: every table and index goes on the small disk.
                conn.execute(text(f"ALTER DATABASE {self.DATABASE} SET default_tablespace = {self.TABLESPACE}"))
        finally:
            engine.dispose()

    def _run(self, tool: str, args: list[str]) -> str:
        if tool == "pg_ctl" and args[:1] == ["start"]:
            args = [*args, "-p", str(self._launcher)]  # the server runs in the small disk's namespace
        return super()._run(tool, args)

    @property
    def _filler(self) -> str:
        """A file on the small disk, reached through the postmaster's view of the filesystem."""
        assert self.pid is not None
        return f"/proc/{self.pid}/root{self.mount_point}/filler"

    def fill(self) -> int:
        """Write to the small disk until nothing more fits, as the server's user; the bytes written."""
        written = subprocess.run([self._python, str(SMALL_DISK), "fill", self._filler], check=True, text=True,
                                 capture_output=True, user=self._system_user, timeout=60).stdout
        return int(written)

    def free(self) -> None:
        os.unlink(self._filler)


SMALL_DISK = Path(__file__).with_name("small_disk.py")


def small_disk_refused() -> str | None:
    """Why no small disk can be made here (unprivileged user namespaces not allowed), or None; tried as the user
    PostgreSQL runs as."""
    user = EmbeddedPostgres.SYSTEM_USER if os.geteuid() == 0 else None
    if user is not None:
        ensure_user_exists(user)
    probe = Path(tempfile.mkdtemp(prefix="tc-small-disk-"))
    try:
        probe.chmod(0o777)
        made = subprocess.run([_python_for(user), str(SMALL_DISK), "run", str(probe), "1m", "/bin/true"],
                              user=user, capture_output=True, text=True, timeout=60)
    finally:
        probe.rmdir()
    return None if made.returncode == 0 else made.stderr.strip()[-300:] or f"exit status {made.returncode}"


def _python_for(system_user: str | None) -> str:
    """An interpreter the server's user may run: ours, unless the server runs as another user (we are root), who
    may not reach ours (under /root, say); then the system's (the launcher needs the standard library only)."""
    if system_user is None:
        return sys.executable
    found = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    assert found, "no python3 the PostgreSQL system user can run"
    return found


@contextmanager
def own_small_disk_postgres(tmp: Path, size: str = "64m") -> Iterator[SmallDiskPostgres]:
    """A `SmallDiskPostgres` of the test's own, its `timecredits` database migrated to head on the small disk."""
    yield from _migrated(SmallDiskPostgres(tmp / "small-pg", size))


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


def assert_ledger_verified(engine: Engine) -> None:
    """`timecredits verify`'s checks: every entry, chain, checkpoint and stored balance."""
    report = verify_ledger(engine)
    assert report.ok, report.problem
    assert report.entries_checked > 0


def report_recovery(fault: str, seconds: float) -> None:
    """The time a fault took to clear, for the fault matrix (docs/operations.md): printed, never asserted."""
    print(f"\nrecovery: {fault}: {seconds:.1f} s")


Record = tuple[bytes, bytes]


class SteadyProducer:
    """`records` sent to tc.activity at a steady rate, in a thread, until `stop()`: however long the test is busy,
    events keep arriving. Give it more records than the test can need; `stop()` returns those sent, which are the
    ones the outcome is checked against."""

    def __init__(self, stack: Stack, records: list[Record], per_second: float) -> None:
        self.sent = 0
        self._records = records
        self._halt = threading.Event()
        self._background = Background(self._run, stack, per_second)

    def _run(self, stack: Stack, per_second: float) -> None:
        started = time.monotonic()
        with stack.producer() as producer:
            for n, (key, raw) in enumerate(self._records):
                if self._halt.is_set():
                    return
                producer.send_raw(stack.topic(TOPIC_ACTIVITY), key, raw)
                self.sent = n + 1
                if n % 10 == 9:
                    time.sleep(max(0.0, started + (n + 1) / per_second - time.monotonic()))
        raise AssertionError(f"all {len(self._records)} records were sent before the test was done: give it more")

    def stop(self, after: int = 0) -> list[Record]:
        """Stop once `after` more records are sent (events that arrive after the last fault); those sent."""
        target = self.sent + after
        wait_until(lambda: self.sent >= target or not self._background.running, 60, f"{after} more records sent")
        self._halt.set()
        self._background.join()
        return self._records[:self.sent]
