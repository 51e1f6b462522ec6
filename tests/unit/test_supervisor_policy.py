"""The restart policy and the drain of `timecredits up`, without processes: a clock, fake children and scripted
consumer-group lags."""
from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import pytest
from kafka.errors import KafkaTimeoutError
from rich.console import Console

from timecredits.drain import GroupTopics, drain
from timecredits.supervisor import Backoff, RestartPolicy, Supervised, Supervisor, describe_exit

POLICY = RestartPolicy()  # 1 s doubling to 30 s, healthy after 60 s, give up at 5 failures within 300 s


def test_delays_double_from_one_second_up_to_thirty() -> None:
    backoff = Backoff(RestartPolicy(max_failures=100, window_s=10_000))
    delays, now = [], 0.0
    for _ in range(8):
        delay = backoff.failed(started_at=now, died_at=now + 1)
        assert delay is not None
        delays.append(delay)
        now += 1 + delay
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_five_quick_failures_give_up() -> None:
    backoff = Backoff(POLICY)
    now, decisions = 0.0, []
    for _ in range(5):
        decisions.append(backoff.failed(started_at=now, died_at=now + 3))
        now += 3 + (decisions[-1] or 0)
    assert decisions == [1, 2, 4, 8, None]


def test_a_healthy_run_resets_the_delay_and_the_count() -> None:
    backoff = Backoff(POLICY)
    assert [backoff.failed(t, t + 1) for t in (0.0, 2.0, 5.0, 10.0)] == [1, 2, 4, 8]
    assert backoff.failed(started_at=19.0, died_at=19.0 + POLICY.healthy_after_s) == 1
    assert backoff.recent_failures == 1
    assert [backoff.failed(t, t + 1) for t in (100.0, 103.0, 108.0)] == [2, 4, 8]
    assert backoff.failed(117.0, 118.0) is None


def test_failures_older_than_the_window_are_forgotten() -> None:
    backoff = Backoff(POLICY)
    for started in (0.0, 40.0, 80.0, 120.0):  # each ran 30 s: not healthy, but far apart
        assert backoff.failed(started, started + 30) is not None
    # the fifth failure comes when the first one is more than 300 s old: four in the window, no give-up
    assert backoff.failed(310.0, 340.0) is not None
    assert backoff.recent_failures == 4


def test_exit_descriptions() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(70) == "exit status 70"
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(None) == "still running"


class FakeProcess:
    """Stands in for a `Child`: alive until the test says it died."""

    next_pid = 100

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.log_path = name, log_path
        self.pid = FakeProcess.next_pid
        FakeProcess.next_pid += 1
        self.returncode: int | None = None
        self.stopped = False

    @property
    def alive(self) -> bool:
        return self.returncode is None

    def stop(self, timeout: float = 30.0) -> int | None:
        self.stopped = True
        if self.returncode is None:
            self.returncode = -15
        return self.returncode

    def log_tail(self, lines: int = 40) -> str:
        return "Traceback: boom"


def fake(child: Supervised) -> FakeProcess:
    process = child.process
    assert isinstance(process, FakeProcess)
    return process


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_supervisor_restarts_when_the_delay_is_over_and_gives_up_on_a_crash_loop() -> None:
    out, clock = io.StringIO(), Clock()
    supervisor = Supervisor(Console(file=out, width=200), spawn=FakeProcess, clock=clock)
    child = supervisor.start("ledger worker", ["worker", "--only", "ledger"], {}, Path("ledger.log"))
    first = fake(child)
    assert supervisor.poll() and child.restarts == 0

    first.returncode = -9
    clock.now += 5
    assert supervisor.poll()  # seen dead: a restart is due in 1 s
    assert "ledger worker (pid 100) exited: killed by SIGKILL; restarting in 1 s" in out.getvalue()
    assert "Traceback: boom" in out.getvalue()
    assert child.process is first and first.stopped  # reaped, not restarted yet
    clock.now += 0.5
    assert supervisor.poll() and child.process is first
    clock.now += 0.5
    assert supervisor.poll() and child.process is not first and child.restarts == 1
    assert f"ledger worker restarted: pid {child.pid} (restart 1)" in out.getvalue()

    for _ in range(3):  # failures 2, 3 and 4, each right after its start
        fake(child).returncode = 70
        assert supervisor.poll()
        clock.now += 60
        assert supervisor.poll()
    assert child.restarts == 4 and "failure 4 of 5" in out.getvalue()
    fake(child).returncode = 70
    assert not supervisor.poll()
    assert supervisor.failure == "ledger worker kept failing" and child.gave_up
    assert "giving up after 5 failures within 300 s" in out.getvalue()
    assert not supervisor.poll()  # stays failed


def test_a_stopped_child_is_not_restarted_and_a_dead_service_is_fatal() -> None:
    clock = Clock()
    supervisor = Supervisor(Console(file=io.StringIO()), spawn=FakeProcess, clock=clock)
    api = supervisor.start("api", ["api"], {}, Path("api.log"))
    worker = supervisor.start("statistics worker", ["worker"], {}, Path("s.log"))
    api.stop()
    clock.now += 100
    assert supervisor.poll() and api.restarts == 0 and api.stopped

    broker_alive = [True]
    supervisor.services["broker"] = lambda: broker_alive[0]
    assert supervisor.poll()
    broker_alive[0] = False
    assert not supervisor.poll()
    assert supervisor.failure == "the embedded broker died"
    supervisor.stop_all()
    assert fake(worker).stopped and worker.stopped


class ScriptedLag:
    """Lags read in turn from a script a group; an exception in the script is raised instead."""

    def __init__(self, script: dict[str, list[int | Exception]]) -> None:
        self.script = script
        self.reads: list[str] = []

    def lag(self, group_id: str, topics: Iterable[str]) -> int:
        self.reads.append(group_id)
        steps = self.script[group_id]
        value = steps.pop(0) if len(steps) > 1 else steps[0]
        if isinstance(value, Exception):
            raise value
        return value


GROUPS = [GroupTopics("the ledger", "ledger", ("tc.activity", "tc.admin")),
          GroupTopics("the statistics", "statistics", ("tc.ledger",))]


def _supervisor(out: io.StringIO) -> Supervisor:
    return Supervisor(Console(file=out, width=200), spawn=FakeProcess)


def test_drain_waits_until_every_group_has_committed_everything() -> None:
    out = io.StringIO()
    probe = ScriptedLag({"ledger": [300, 100, 0], "statistics": [50, 80, 20, 0]})
    left = drain(_supervisor(out), probe, GROUPS, 10, lambda: False, interval_s=0.001, report_every_s=0)
    assert left == {}
    assert probe.reads[:2] == ["ledger", "statistics"]  # the ledger first: it feeds the statistics
    assert "draining: the ledger has 300 event(s) to apply, the statistics has 50 event(s) to apply" in out.getvalue()


def test_drain_gives_back_what_is_left_on_timeout_or_a_second_interrupt() -> None:
    probe = ScriptedLag({"ledger": [7], "statistics": [0]})
    assert drain(_supervisor(io.StringIO()), probe, GROUPS, 0.05, lambda: False, interval_s=0.01) == {"the ledger": 7}
    assert drain(_supervisor(io.StringIO()), probe, GROUPS, 60, lambda: True) == {"the ledger": 7}


def test_drain_asks_again_when_the_offsets_cannot_be_read() -> None:
    out = io.StringIO()
    probe = ScriptedLag({"ledger": [KafkaTimeoutError("slow"), 5, 0], "statistics": [0]})
    assert drain(_supervisor(out), probe, GROUPS, 10, lambda: False, interval_s=0.001) == {}
    assert "could not read the offsets" in out.getvalue()
    never = ScriptedLag({"ledger": [KafkaTimeoutError("down")], "statistics": [0]})
    with pytest.raises(TimeoutError):
        drain(_supervisor(io.StringIO()), never, GROUPS, 0.02, lambda: False, interval_s=0.005)
