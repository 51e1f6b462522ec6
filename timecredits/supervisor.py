"""What `timecredits up` does with its children: restart the ones that die, give up on one that keeps failing,
and on a clean stop drain the consumer groups before the broker and PostgreSQL go.

Nothing here blocks: `Supervisor.poll()` looks at every child once, reports the dead, and starts the ones whose
backoff has run out. `up` calls it from its main loop and from anything long it does meanwhile (waiting for the
API, loading the demo, draining), so children are always started from the main thread, whose life their
parent-death signal is tied to.
"""
from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape

from timecredits.processes import Child

__all__ = [
    "Backoff",
    "GroupTopics",
    "LagProbe",
    "RestartPolicy",
    "Supervised",
    "Supervisor",
    "describe_exit",
    "drain",
    "drain_groups",
    "group_lag",
    "shut_down",
]

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


# -- draining ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupTopics:
    """A consumer group and the topics it must have consumed and committed before a clean stop."""

    label: str
    group_id: str
    topics: tuple[str, ...]


class LagProbe:
    """Committed offsets of consumer groups against the end offsets of their topics (kafka-python clients)."""

    def __init__(self, bootstrap_servers: str, timeout_ms: int = 10_000) -> None:
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="timecredits-drain",
                                       request_timeout_ms=timeout_ms)
        try:
            self._consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, client_id="timecredits-drain",
                                           group_id=None, enable_auto_commit=False, request_timeout_ms=timeout_ms,
                                           fetch_max_wait_ms=100)
        except BaseException:
            self._admin.close()
            raise

    def lag(self, group_id: str, topics: Iterable[str]) -> int:
        """Records on `topics` that `group_id` has not committed yet (a partition it never committed counts from
        the start of the partition)."""
        partitions = [TopicPartition(topic, partition) for topic in topics
                      for partition in sorted(self._consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return 0
        starts = self._consumer.beginning_offsets(partitions)
        ends = self._last_offsets(partitions, starts)
        committed = self._admin.list_group_offsets({group_id: partitions}).get(group_id, {})
        total = 0
        for tp in partitions:
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else starts[tp]
            total += max(0, ends[tp] - position)
        return total

    def _last_offsets(self, partitions: list[TopicPartition], starts: Mapping[TopicPartition, int],
                      timeout_s: float = 5.0) -> dict[TopicPartition, int]:
        """The offset after each partition's last record.

        Not `end_offsets` alone: Tansu 0.6 answers ListOffsets(latest) with the offset after the *first* record
        of a partition's last record batch (a batch of 100 records at offsets 0-99 gives 1), so a group that had
        consumed only the start of that batch would look drained. The answer is where that batch starts, so the
        batch is fetched from there and the position after it taken; on a broker that answers right, the fetch
        returns the last record alone and changes nothing.
        """
        reported = self._consumer.end_offsets(partitions)
        ends = dict(reported)
        pending = {tp for tp in partitions if reported[tp] > starts[tp]}
        if not pending:
            return ends
        self._consumer.assign(sorted(pending))
        for tp in pending:
            self._consumer.seek(tp, reported[tp] - 1)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            fetched = self._consumer.poll(timeout_ms=200, max_records=1_000_000, update_offsets=True)
            pending -= {tp for tp, records in fetched.items() if records}
        self._consumer.poll(timeout_ms=0, max_records=1_000_000)  # the rest of a batch split over two fetches
        for tp in partitions:
            if reported[tp] > starts[tp]:
                ends[tp] = max(reported[tp], self._consumer.position(tp))
        if pending:
            raise TimeoutError(f"no records fetched from {sorted(pending)} within {timeout_s:.0f} s")
        return ends

    def close(self) -> None:
        self._consumer.close()
        self._admin.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def group_lag(bootstrap_servers: str, group_id: str, topics: Sequence[str]) -> int:
    """How many records on `topics` the consumer group `group_id` has yet to consume and commit."""
    with LagProbe(bootstrap_servers) as probe:
        return probe.lag(group_id, topics)


class LagReader(Protocol):
    def lag(self, group_id: str, topics: Iterable[str]) -> int: ...


def drain(supervisor: Supervisor, probe: LagReader, groups: Sequence[GroupTopics], timeout_s: float,
          hurry: Callable[[], bool], *, interval_s: float = 0.5, report_every_s: float = 2.0) -> dict[str, int]:
    """Until every group has committed everything on its topics, `timeout_s` has passed, `hurry()` is true, or a
    child gave up; meanwhile children that die are restarted as usual. Returns what is left, by group label.

    The groups are checked in the order given: the ledger publishes to tc.ledger before it commits, so when
    its lag was 0, the statistics' lag read after it counts every entry there will be.
    """
    console = supervisor.console
    deadline = time.monotonic() + timeout_s
    next_report = time.monotonic()
    left: dict[str, int] | None = None
    while True:
        try:
            lags = {group.label: probe.lag(group.group_id, group.topics) for group in groups}  # in order
        except (KafkaError, OSError, TimeoutError) as exc:  # a slow or briefly unreachable broker: ask again
            error: BaseException | None = exc
            console.print(f"[yellow]draining: could not read the offsets ({exc!r})[/yellow]")
        else:
            error = None
            left = {label: n for label, n in lags.items() if n}
            if not left:
                return {}
        now = time.monotonic()
        if now >= deadline or hurry() or not supervisor.poll():
            if left is None:
                raise TimeoutError("the consumer groups' offsets could not be read") from error
            return left  # the last count read
        if now >= next_report and left:
            console.print("draining: " + ", ".join(f"{label} has {n} event(s) to apply" for label, n in left.items()))
            next_report = now + report_every_s
        time.sleep(interval_s)


def drain_groups(topic_prefix: str) -> list[GroupTopics]:
    """What a clean stop of `up` waits for, in order: the ledger, then the statistics fed by it."""
    from consumers.worker import ledger_group, statistics_group
    from ledger.events import TOPIC_ACTIVITY, TOPIC_ADMIN, TOPIC_LEDGER

    prefix = topic_prefix
    return [
        GroupTopics("the ledger", ledger_group(prefix), (prefix + TOPIC_ACTIVITY, prefix + TOPIC_ADMIN)),
        GroupTopics("the statistics", statistics_group(prefix), (prefix + TOPIC_LEDGER,)),
    ]


def shut_down(supervisor: Supervisor, first: Supervised, bootstrap_servers: str, groups: Sequence[GroupTopics], *,
              embedded_broker: bool, drain_timeout_s: float, hurry: Callable[[], bool]) -> dict[str, int]:
    """Stop `first` (the API: no new writes), drain `groups`, then stop the other children; the caller stops the
    broker and PostgreSQL after. After a give-up or with `hurry()` true nothing is waited for, but what is left
    is still counted and said (unless the broker itself is what died). Returns what was left, by group label."""
    console = supervisor.console
    console.print("stopping…")
    first.stop()
    waiting = supervisor.failure is None and not hurry()
    broker_gone = supervisor.failure is not None and "broker" in supervisor.failure
    left: dict[str, int] = {}
    if waiting:
        console.print(f"draining: waiting up to {drain_timeout_s:.0f} s for the workers to apply what the broker "
                      "holds (Ctrl-C again to stop at once)")
    try:
        if not broker_gone:
            with LagProbe(bootstrap_servers) as probe:
                left = drain(supervisor, probe, groups, drain_timeout_s if waiting else 0.0, hurry)
    except Exception as exc:  # noqa: BLE001 - the broker does not answer: nothing more to wait for
        console.print(f"[red]could not read the consumer groups' offsets: {exc!r}[/red]")
    if left:
        where = ("the embedded broker keeps them in memory only, so they are lost when it stops now"
                 if embedded_broker else "they stay in the broker and are applied when a worker runs again")
        console.print(f"[red]not drained: {sum(left.values())} event(s) not yet applied "
                      f"({', '.join(f'{label}: {n}' for label, n in left.items())}); {where}[/red]")
    elif waiting and supervisor.failure is None and not hurry():
        console.print("drained: the workers have applied and committed everything on the broker")
    supervisor.stop_all()
    return left
