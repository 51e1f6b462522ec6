"""A clean stop of `timecredits up`: the API first, then wait until the consumer groups have committed everything
on their topics, then the workers (the caller stops the broker and PostgreSQL after)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from timecredits.supervisor import Supervised, Supervisor

__all__ = ["GroupTopics", "LagProbe", "LagReader", "drain", "drain_groups", "group_lag", "shut_down"]


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
