"""Figure 1: events per second from the first produce to the last committed entry, with N workers."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ledger.pg.verify import verify_ledger
from timecredits.benchmark.stack import Scenario, wait_for
from timecredits.benchmark import workload
from timecredits.benchmark.workload import Record


@dataclass(frozen=True)
class IngestResult:
    workers: int
    events: int
    seconds: float
    produce_seconds: float
    steady_per_second: float  # between 10 % and 90 % of the events decided
    verified: bool

    @property
    def per_second(self) -> float:
        return self.events / self.seconds


def run_ingest(run: Scenario, workers: int, registry: list[Record], activity: list[Record]) -> IngestResult:
    children = run.start_workers(workers)
    with run.producer() as producer:
        for record in registry:
            run.send(producer, record)
        producer.flush()
    volunteers = sum(1 for r in registry if b'"VolunteerRegistered"' in r.value)
    wait_for(lambda: run.volunteers() >= volunteers, 180, "the registry to be applied", children)
    members = workload.memberships([workload.volunteer_id(n) for n in range(volunteers)])
    with run.producer() as producer:
        for record in members:
            run.send(producer, record)
        producer.flush()
    wait_for(lambda: run.members() >= len(members), 180, "the memberships to be applied", children)
    baseline = run.decided()

    produced_at: list[float] = []

    def produce() -> None:
        with run.producer() as producer:
            for record in activity:
                run.send(producer, record)
            producer.flush(timeout=300)
        produced_at.append(time.perf_counter())

    started = time.perf_counter()
    thread = threading.Thread(target=produce, name="bench-producer")
    thread.start()
    marks: dict[float, float] = {}
    total = len(activity)

    def progress() -> bool:
        done = run.decided() - baseline
        for fraction in (0.1, 0.9):
            if fraction not in marks and done >= fraction * total:
                marks[fraction] = time.perf_counter()
        return done >= total

    wait_for(progress, 1800, f"{total} events to be decided", children, interval=0.05)
    finished = time.perf_counter()
    thread.join()
    run.stop_children()
    report = verify_ledger(run.engine)
    steady = 0.8 * total / (marks[0.9] - marks[0.1]) if marks[0.9] > marks[0.1] else 0.0
    return IngestResult(workers, total, finished - started, produced_at[0] - started, steady, report.ok)
