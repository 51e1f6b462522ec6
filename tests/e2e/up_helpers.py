"""`timecredits up` run as a developer runs it, and the processes it is responsible for, for the e2e tests.

Collecting what `up` started: its descendants (workers, API, the Tansu broker), the postmaster (started by
pg_ctl, so re-parented away from `up`: found through `postgres/postmaster.pid`) with its backends, and anything
whose command line names the data directory or the broker's listener.
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

STOP_TIMEOUT_S = 60


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


def fresh_clone_env() -> dict[str, str]:
    """The environment of a developer on a fresh clone: no configured services, no timecredits settings."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS") and not key.startswith("TIMECREDITS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "300"  # rich wraps at the terminal width; a pipe has none
    return env


def postmaster(data_dir: Path) -> psutil.Process | None:
    pidfile = data_dir / "postgres" / "postmaster.pid"
    try:
        return psutil.Process(int(pidfile.read_text().split("\n", 1)[0]))
    except (OSError, ValueError, psutil.NoSuchProcess):
        return None


def process_tree(root: int, data_dir: Path, broker_port: int | None) -> dict[int, psutil.Process]:
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
    server = postmaster(data_dir)
    if server is not None:
        add(server)
    markers = [str(data_dir)] + ([f"127.0.0.1:{broker_port}"] if broker_port else [])
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if any(marker in cmdline for marker in markers):
            add(proc)
    return found


def alive(proc: psutil.Process) -> bool:
    """Still running: the same process (not a reused pid) and not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:160]}"
    except psutil.Error:
        return f"{proc.pid} (gone)"


def markers_alive(data_dir: Path, broker_port: int) -> list[str]:
    """Processes started after the snapshot that still name the data dir or the broker (there must be none)."""
    markers = (str(data_dir), f"127.0.0.1:{broker_port}")
    found: list[str] = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if any(marker in cmdline for marker in markers) and alive(proc):
            found.append(describe(proc))
    return found


@contextmanager
def running_up(data_dir: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> Iterator[UpProcess]:
    """`timecredits up --data-dir DATA_DIR --port PORT [EXTRA…]` in a process group of its own, as a shell runs a
    foreground job; if it still runs at the end (a failed test), it and everything it started are stopped."""
    process = subprocess.Popen(
        [sys.executable, "-m", "timecredits.cli", "up", "--data-dir", str(data_dir), "--port", str(port), *extra],
        env=env or fresh_clone_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:
        yield UpProcess(process)
    finally:
        if process.poll() is None:
            leftovers = process_tree(process.pid, data_dir, None)
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            for proc in leftovers.values():
                if alive(proc):
                    proc.kill()


def wait_all_gone(procs: dict[int, psutil.Process], timeout: float = 10) -> list[psutil.Process]:
    """The processes still alive after up to `timeout` s (an orphan's exit is reaped by init: give it a moment)."""
    deadline = time.monotonic() + timeout
    while (left := [proc for proc in procs.values() if alive(proc)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
