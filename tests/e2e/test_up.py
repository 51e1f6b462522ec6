"""`timecredits up --demo` as on a fresh clone: it starts everything, serves the demo, and Ctrl-C leaves nothing.

The command runs without DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS or any TIMECREDITS_* setting, so it starts the
embedded PostgreSQL and broker itself in the test's data directory. Before the SIGINT, the test collects every
process `up` is responsible for: its descendants (worker, API, the Tansu broker), the postmaster (started by
pg_ctl, so re-parented away from `up`: found through `postgres/postmaster.pid`) with its backends, and anything
whose command line names the data directory or the broker's listener. After `up` exits, none may be alive
(a zombie counts as gone) and no port it listened on may still accept connections.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.broker, pytest.mark.integration]

START_TIMEOUT_S = 240  # embedded services, migrations, a worker, the API, ~10,000 demo events, verify
STOP_TIMEOUT_S = 60
DECIMAL_CREDITS = re.compile(r"^-?[0-9]+\.[0-9]{2}$")


@dataclass
class UpProcess:
    """`timecredits up` with its output read line by line on a thread (so its pipe never fills)."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def read_until(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern.pattern!r} within {timeout} s:\n{self.output()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.process.wait(timeout=10)
                raise AssertionError(f"`up` exited ({self.process.returncode}) before printing "
                                     f"{pattern.pattern!r}:\n{self.output()}")
            self.lines.append(line)
            match = pattern.search(line)
            if match:
                return match

    def read_to_end(self, timeout: float) -> str:
        """Every line until the output closes; the output so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return self.output()

    def output(self) -> str:
        while True:  # whatever the reader has queued since
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines[-60:])


def _fresh_clone_env() -> dict[str, str]:
    """The environment of a developer on a fresh clone: no configured services, no timecredits settings."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS") and not key.startswith("TIMECREDITS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "300"  # rich wraps at the terminal width; a pipe has none
    return env


@pytest.fixture()
def up(tmp_path: Path) -> Iterator[tuple[UpProcess, Path, int]]:
    data_dir = tmp_path / "data"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "timecredits.cli", "up", "--demo", "--data-dir", str(data_dir), "--port", str(port)],
        env=_fresh_clone_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    running = UpProcess(process)
    try:
        yield running, data_dir, port
    finally:
        if process.poll() is None:  # the test failed before stopping it: stop everything it started
            leftovers = _tree(process.pid, data_dir, None)
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            for proc in leftovers.values():
                if _alive(proc):
                    proc.kill()


def _postmaster(data_dir: Path) -> psutil.Process | None:
    pidfile = data_dir / "postgres" / "postmaster.pid"
    try:
        return psutil.Process(int(pidfile.read_text().split("\n", 1)[0]))
    except (OSError, ValueError, psutil.NoSuchProcess):
        return None


def _tree(root: int, data_dir: Path, broker_port: int | None) -> dict[int, psutil.Process]:
    """Every live process `up` (pid `root`) is responsible for, by pid."""
    found: dict[int, psutil.Process] = {}

    def add(proc: psutil.Process) -> None:
        found[proc.pid] = proc
        try:
            for child in proc.children(recursive=True):
                found[child.pid] = child
        except psutil.NoSuchProcess:
            pass

    add(psutil.Process(root))
    postmaster = _postmaster(data_dir)
    if postmaster is not None:
        add(postmaster)
    markers = [str(data_dir)] + ([f"127.0.0.1:{broker_port}"] if broker_port else [])
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if any(marker in cmdline for marker in markers):
            add(proc)
    return found


def _alive(proc: psutil.Process) -> bool:
    """Still running: the same process (not a reused pid) and not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:160]}"
    except psutil.Error:
        return f"{proc.pid} (gone)"


def test_up_demo_serves_and_ctrl_c_leaves_nothing_behind(up: tuple[UpProcess, Path, int]) -> None:
    running, data_dir, api_port = up
    postgres_port = int(running.read_until(re.compile(r"PostgreSQL: \S+@127\.0\.0\.1:(\d+)/"), START_TIMEOUT_S)[1])
    broker_port = int(running.read_until(re.compile(r"Kafka bootstrap servers: 127\.0\.0\.1:(\d+)"), 60)[1])
    url = running.read_until(re.compile(r"API: (http://\S+)"), START_TIMEOUT_S)[1]
    token = running.read_until(re.compile(r"admin token: (\S+)"), 10)[1]
    assert url == f"http://127.0.0.1:{api_port}"

    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "database": True, "broker": True}
    response = httpx.get(f"{url}/v1/volunteers/v0001/balance", headers={"Authorization": f"Bearer {token}"},
                         timeout=10)
    assert response.status_code == 200, response.text
    balance = response.json()
    assert balance["volunteer_id"] == "v0001"
    for name in ("balance", "held", "available"):
        assert DECIMAL_CREDITS.match(balance[name]), balance
    assert Decimal(balance["balance"]) > 0, balance
    assert Decimal(balance["balance"]) == Decimal(balance["held"]) + Decimal(balance["available"]), balance

    started = _tree(running.process.pid, data_dir, broker_port)
    names = {" ".join(proc.cmdline()) for proc in started.values()}
    assert any("timecredits.cli worker" in name for name in names), names
    assert any("timecredits.cli api" in name for name in names), names
    assert any(f"tcp://127.0.0.1:{broker_port}" in name for name in names), names
    postmaster = _postmaster(data_dir)
    assert postmaster is not None and postmaster.pid in started, "no postmaster found through postmaster.pid"
    assert all(_accepts(port) for port in (api_port, broker_port, postgres_port))

    os.killpg(running.process.pid, signal.SIGINT)  # what Ctrl-C does to the terminal's foreground job
    try:
        code = running.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`up` did not exit within {STOP_TIMEOUT_S} s of SIGINT:\n{running.output()}")
    output = running.read_to_end(10)
    assert code == 0, output
    assert output.splitlines()[-1].strip() == "stopped", output

    deadline = time.monotonic() + 10  # an orphan's exit is reaped by init: give it a moment
    while (left := [proc for proc in started.values() if _alive(proc)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, "still running after `up` exited:\n" + "\n".join(_describe(proc) for proc in left)
    assert not _tree_markers_alive(data_dir, broker_port)
    assert not [port for port in (api_port, broker_port, postgres_port) if _accepts(port)]


def _tree_markers_alive(data_dir: Path, broker_port: int) -> list[str]:
    """Processes started after the snapshot that still name the data dir or the broker (there must be none)."""
    markers = (str(data_dir), f"127.0.0.1:{broker_port}")
    alive = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if any(marker in cmdline for marker in markers) and _alive(proc):
            alive.append(_describe(proc))
    return alive
