"""Load the demo programme through the real event path: producer -> Kafka -> worker -> PostgreSQL.

`load_demo` returns once the worker has applied every event and recorded the statistics of every entry
(tc.ledger -> statistics consumer), so that the figures a lead reads right after `up` are the whole demo's.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, text

from ledger.events import MembershipStarted
from ledger.intake import own_actor
from ledger.pg import notes
from ledger.pg.processing import count_decided
from producers.kafka import EventProducer
from timecredits import demo


def keep_notes(engine: Engine, events: Sequence[demo.DemoEvent]) -> None:
    """The events' words in `event_notes`, before the events (which carry none) are produced (docs/design.md
    §5.16); loading the demo again writes nothing new."""
    with engine.begin() as conn:
        notes.write_many(conn, [(e.event_id, e.note[0], e.note[1]) for e in events  # type: ignore[misc]
                                if e.note is not None])


def _produce(producer: EventProducer, events: Sequence[demo.DemoEvent], progress: Progress, label: str) -> None:
    task = progress.add_task(label, total=len(events))
    for n, event in enumerate(events, 1):
        # A spend or a gift is the volunteer's own act in the demo (docs/design.md §5.6); the rest the demo's.
        actor = own_actor(event.payload) or demo.ACTOR
        producer.publish(event.payload, actor=actor, event_id=event.event_id, occurred_at=event.occurred_at)
        if n % 500 == 0 or n == len(events):
            progress.update(task, completed=n)
    producer.flush()


class LoadInterrupted(RuntimeError):
    """The demo load stopped before the worker had applied it: `up` was asked to stop, or a child kept failing."""


def _await(count: Callable[[], int], total: int, progress: Progress, label: str, timeout_s: float,
           keep_going: Callable[[], bool]) -> None:
    task = progress.add_task(label, total=total)
    deadline = time.monotonic() + timeout_s
    while (done := count()) < total:
        progress.update(task, completed=done)
        if not keep_going():
            raise LoadInterrupted(f"the demo load stopped at {done} of {total} {label}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {total} demo events were processed in {timeout_s:.0f} s")
        time.sleep(0.5)
    progress.update(task, completed=total)


def _registry_rows(engine: Engine) -> int:
    """Registry events leave rows, not outcomes (the API writes the registry synchronously)."""
    with engine.connect() as conn:
        return sum(
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608 - fixed table names
            for table in ("organisations", "volunteers", "opportunities")
        )


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608 - fixed names


def load_demo(producer: EventProducer, engine: Engine, console: Console, keep_going: Callable[[], bool]) -> int:
    """Produce the registry, wait for the worker to apply it, then a year of activity; returns events loaded.

    `keep_going` is called every half second while waiting: `up` supervises its children in it (a worker that
    died is restarted meanwhile, and the wait goes on); when it returns False, `LoadInterrupted` is raised.
    """
    registry, activity = demo.registry(), list(demo.activity())
    # Memberships are keyed by the volunteer, organisations by themselves: on other partitions, a membership could
    # reach the worker before its organisation, so the organisations go first (the API writes them at once).
    memberships = [e for e in registry if isinstance(e.payload, MembershipStarted)]
    entities = [e for e in registry if not isinstance(e.payload, MembershipStarted)]
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        _produce(producer, entities, progress, "registry events produced")
        _await(lambda: _registry_rows(engine), len(entities), progress, "registry applied by the worker", 180,
               keep_going)
        _produce(producer, memberships, progress, "memberships produced")
        _await(lambda: _count(engine, "memberships"), len(memberships), progress, "memberships applied by the worker",
               180, keep_going)
        keep_notes(engine, activity)
        _produce(producer, activity, progress, "activity events produced")
        ids = [e.event_id for e in activity]
        _await(lambda: count_decided(engine, ids), len(ids), progress, "activity applied by the worker", 600,
               keep_going)
        # One statistics fact an entry; the statistics consumer trails the ledger (docs/design.md §5).
        _await(lambda: _count(engine, "stats_facts"), _count(engine, "entries"), progress,
               "statistics recorded by the statistics worker", 180, keep_going)
    return len(registry) + len(activity)


def await_statistics(engine: Engine, keep_going: Callable[[], bool], timeout_s: float = 60) -> bool:
    """Wait, quietly, until the statistics worker has counted every entry; False if it had not within `timeout_s`.

    The demo's spend code writes one more entry after the load: verify, run next, would otherwise find it
    "not yet counted" by the worker that trails the ledger (docs/design.md §3.3), true but not the demo's point.
    """
    deadline = time.monotonic() + timeout_s
    while _count(engine, "stats_facts") < _count(engine, "entries"):
        if not keep_going() or time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
