"""`up`'s verify timer never starts a run while one is going, and waits an interval after a run has ended
(docs/design.md §3.3); the API exports the last result it finds in the status file."""
from __future__ import annotations

import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from timecredits.verify_status import VerifyStatus, VerifyStatusCollector, read_status, write_status
from timecredits.verify_timer import VerifyTimer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_run_never_overlaps_the_one_before_and_the_next_is_due_an_interval_after_it_ended() -> None:
    clock, started, release = Clock(), threading.Semaphore(0), threading.Event()
    runs: list[float] = []

    def run() -> None:
        runs.append(clock.now)
        started.release()
        release.wait(10)

    timer = VerifyTimer(run, 60.0, first_in_s=0.0, clock=clock)
    assert timer.tick() and started.acquire(timeout=10)
    clock.now = 500.0  # long past the interval, but the first run has not ended
    assert not timer.tick() and timer.running
    release.set()
    timer.join(10)
    assert not timer.running
    assert not timer.tick(), "due 60 s after the run ended, at 560"
    clock.now = 560.0
    assert timer.tick() and started.acquire(timeout=10)
    timer.join(10)
    assert runs == [0.0, 560.0]


def test_the_status_file_becomes_the_verify_metrics(tmp_path: Path) -> None:
    path = tmp_path / "verify-status.json"
    registry = CollectorRegistry()
    registry.register(VerifyStatusCollector(path))
    assert b"timecredits_verify" not in generate_latest(registry), "no run yet: no metric"

    write_status(path, VerifyStatus(False, 1_800_000_000.0, 1.25, {"hash_chain": True, "statistics": False}))
    assert read_status(path) == VerifyStatus(False, 1_800_000_000.0, 1.25, {"hash_chain": True, "statistics": False})
    text = generate_latest(registry).decode()
    assert "timecredits_verify_ok 0.0" in text
    assert 'timecredits_verify_check_ok{check="hash_chain"} 1.0' in text
    assert 'timecredits_verify_check_ok{check="statistics"} 0.0' in text
    assert "timecredits_verify_last_run_timestamp_seconds 1.8e+09" in text
    assert "timecredits_verify_duration_seconds 1.25" in text

    path.write_text("not json")
    assert read_status(path) is None and b"timecredits_verify" not in generate_latest(registry)
