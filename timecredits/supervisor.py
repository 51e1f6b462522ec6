"""What `timecredits up` does with its children: restart the ones that die, give up on one that keeps failing
(the clean stop that drains the consumer groups first is in `timecredits.drain`).

Nothing here blocks: `Supervisor.poll()` looks at every child once, reports the dead, and starts the ones whose
backoff has run out. `up` calls it from its main loop and from anything long it does meanwhile (waiting for the
API, loading the demo, draining), so children are always started from the main thread, whose life their
parent-death signal is tied to.
"""
from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.markup import escape

from timecredits.processes import Child

__all__ = ["Backoff", "RestartPolicy", "Supervised", "Supervisor", "describe_exit"]

Clock = Callable[[], float]


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a child that died, and when to stop trying.

    The backoff starts at 1 s and doubles to 30 s: a child killed once (by the OOM killer, by hand) is back
    within a second, and one that dies at start-up does not spin the two cores the stack shares. A run of
    `healthy_after_s` (60 s) resets both the delay and the failure count: such a child was making progress
    and deserves the short delay again.

    `up` gives up when a child fails `max_failures` (5) times within `window_s` (5 min) without a healthy run
    in between. With the backoff that is a child that died again within a minute or so of each of its last
    five starts (waits of 1 + 2 + 4 + 8 s, plus a few seconds of start-up each): a crash loop, a bad setting
    or a schema the code does not know, which more restarts will not cure. A passing cause (PostgreSQL
    restarting, the broker busy) has had those 15 s of waits and five fresh starts to clear. Giving up ends
    `up` and, with the embedded broker, the events it holds, so the bar is set well above one bad minute.
    """

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    healthy_after_s: float = 60.0
    max_failures: int = 5
    window_s: float = 300.0


class Backoff:
    """The restart decisions for one child, from the times it started and died. Pure: the caller gives the time."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._failures: deque[float] = deque()
        self._next_delay = policy.first_delay_s

    @property
    def recent_failures(self) -> int:
        return len(self._failures)

    def failed(self, started_at: float, died_at: float) -> float | None:
        """A run that started at `started_at` ended at `died_at`: the delay before the next start, or None to
        give up."""
        policy = self.policy
        if died_at - started_at >= policy.healthy_after_s:
            self._failures.clear()
            self._next_delay = policy.first_delay_s
        while self._failures and died_at - self._failures[0] > policy.window_s:
            self._failures.popleft()
        self._failures.append(died_at)
        if len(self._failures) >= policy.max_failures:
            return None
        delay = self._next_delay
        self._next_delay = min(delay * 2, policy.max_delay_s)
        return delay


def describe_exit(returncode: int | None) -> str:
    """`exit status 70`, `killed by SIGKILL`."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class _Process(Protocol):
    name: str
    log_path: Path

    @property
    def pid(self) -> int: ...
    @property
    def alive(self) -> bool: ...
    @property
    def returncode(self) -> int | None: ...
    def stop(self, timeout: float = 30.0) -> int | None: ...
    def log_tail(self, lines: int = 40) -> str: ...


Spawn = Callable[[str, list[str], dict[str, str], Path], _Process]


def _spawn_child(name: str, args: list[str], env: dict[str, str], log_path: Path) -> _Process:
    return Child(name, args, env, log_path)


class Supervised:
    """One child under supervision: its current process, its backoff, whether it is waiting to restart."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_path: Path, policy: RestartPolicy,
                 console: Console, *, spawn: Spawn = _spawn_child, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.backoff = Backoff(policy)
        self.restarts = 0
        self.gave_up = False
        self.stopped = False
        self._console = console
        self._spawn = spawn
        self._clock = clock
        self._restart_at: float | None = None
        self.process = self._start()

    def _start(self) -> _Process:
        self._started_at = self._clock()
        return self._spawn(self.name, self.args, self.env, self.log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        """Alive now, or about to be restarted: not given up on, not stopped."""
        return not (self.gave_up or self.stopped)

    def poll(self) -> bool:
        """Report a death, start a due restart; False once given up on."""
        if not self.running:
            return not self.gave_up
        now = self._clock()
        if self._restart_at is None:
            if self.process.alive:
                return True
            self.process.stop()  # reaps it and closes its log
            how = describe_exit(self.process.returncode)
            delay = self.backoff.failed(self._started_at, now)
            tail = escape(self.process.log_tail(15)) or "(it wrote nothing to its log)"
            if delay is None:
                self.gave_up = True
                self._console.print(
                    f"[red bold]{self.name} (pid {self.process.pid}) exited: {how}; giving up after "
                    f"{self.backoff.recent_failures} failures within {self.backoff.policy.window_s:.0f} s[/red bold]"
                    f"\n{tail}")
                return False
            self._console.print(
                f"[red]{self.name} (pid {self.process.pid}) exited: {how}; restarting in {delay:.0f} s "
                f"(failure {self.backoff.recent_failures} of {self.backoff.policy.max_failures}); "
                f"last lines of {self.log_path}:[/red]\n{tail}")
            self._restart_at = now + delay
            return True
        if now >= self._restart_at:
            self._restart_at = None
            self.process = self._start()
            self.restarts += 1
            self._console.print(f"{self.name} restarted: pid {self.process.pid} (restart {self.restarts})")
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop for good (SIGTERM, then SIGKILL after `timeout`): no restart after this."""
        self.stopped = True
        self._restart_at = None
        self.process.stop(timeout)


@dataclass
class Supervisor:
    """The children of `up` and the embedded services they depend on."""

    console: Console
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    spawn: Spawn = _spawn_child
    clock: Clock = time.monotonic
    children: list[Supervised] = field(default_factory=list)
    #: Embedded services by name, with a liveness check: their death is not survivable (see `poll`).
    services: dict[str, Callable[[], bool]] = field(default_factory=dict)
    failure: str | None = None

    def start(self, name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> Supervised:
        child = Supervised(name, args, env, log_path, self.policy, self.console, spawn=self.spawn, clock=self.clock)
        self.children.append(child)
        self.console.print(f"{name}: pid {child.pid}, log {log_path}")
        return child

    def poll(self) -> bool:
        """One look at everything; False once something failed for good (then `failure` says what)."""
        if self.failure is not None:
            return False
        for name, alive in self.services.items():
            if not alive():
                # The embedded broker keeps its messages in memory, and both change port when started again
                # (the children's settings would be stale): restarting them would not bring anything back.
                self.failure = f"the embedded {name} died"
                self.console.print(f"[red bold]{self.failure}; stopping everything[/red bold]")
                return False
        for child in self.children:
            if not child.poll():
                self.failure = f"{child.name} kept failing"
                return False
        return True

    def stop_all(self) -> None:
        """Stop every child, last started first."""
        for child in reversed(self.children):
            child.stop()
