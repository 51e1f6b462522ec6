"""The fault matrix: the statistics worker killed with SIGKILL under load, alone and together with the ledger
worker (docs/operations.md, "The fault matrix").

The ledger and the statistics run in processes of their own (`worker --only`), as `timecredits up` runs them.
Events arrive at a steady rate; a worker is killed at a random moment within a batch and a new one started in the
same group. tc.ledger is delivered again from the last committed offset, and a fact is idempotent by entry id
(docs/design.md §5.2): afterwards there is exactly one fact for each entry that has one, and the facts are those a
clean pass over the same events records.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from ledger.pg.processing import EventProcessor
from stats.facts import write_facts
from tests.e2e.conftest import Stack
from tests.e2e.faults import Record, SteadyProducer, assert_ledger_verified, report_recovery, wait_for_exit_or
from tests.e2e.stack import WorkerProcess, decided_count, ledger_summary
from tests.e2e.test_faults import _backlog, _event_ids, _registry, clean_pass

pytestmark = [pytest.mark.broker, pytest.mark.integration]

KILLS = 4
RATE = 40.0
#: Events sent after the last kill: their entries' facts are still to be recorded when the last start comes.
AFTER_THE_LAST_KILL = 50

#: A fact by the event of its entry (entry ids differ between two databases), with everything the figures use.
_FACTS = text("""
    SELECT e.event_id::text, f.kind, f.occurred_on, f.volunteer_id, f.other_volunteer_id, f.org_id, f.category,
           f.activity_category, f.amount, f.minutes, f.sign, o.event_id::text
    FROM stats_facts f LEFT JOIN entries e ON e.id = f.entry_id LEFT JOIN entries o ON o.id = f.original_entry_id
""")


def _facts(engine: Engine) -> Counter[tuple[object, ...]]:
    with engine.connect() as conn:
        return Counter(tuple(row) for row in conn.execute(_FACTS))


def _fact_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM stats_facts")).scalar_one())


def _clean_run(embedded_postgres: str, template: str, records: list[Record]) -> tuple[dict[str, object],
                                                                                        Counter[tuple[object, ...]]]:
    """The ledger and the facts one clean pass makes: the events in the order produced, into a fresh database,
    each batch's committed entries straight to the statistics."""
    return clean_pass(embedded_postgres, template, records, lambda engine: (ledger_summary(engine), _facts(engine)),
                      after_batch=lambda engine, batch: write_facts(engine, batch.committed))


def _killed_under_load(stack: Stack, embedded_postgres: str, template: str, seed: int,
                       start: Callable[[], list[WorkerProcess]], fault: str) -> None:
    """Start workers with `start`, kill them all with SIGKILL once the statistics have recorded a random number
    of facts and after a random pause, KILLS times; then the last start finishes, checked against a clean run."""
    rng = random.Random(seed)
    EventProcessor(stack.engine).process(_registry())
    records = _backlog(6_000, seed=seed)
    ids = _event_ids(records)
    producing = SteadyProducer(stack, records, RATE)
    back_after: list[float] = []
    try:
        for n in range(KILLS):
            before = _fact_count(stack.engine)
            restarted = time.monotonic()
            workers = start()
            wait_for_exit_or(lambda: _fact_count(stack.engine) > before, workers[-1], 120,
                             f"the statistics worker {n} to record facts")
            back_after.append(time.monotonic() - restarted)
            goal = _fact_count(stack.engine) + rng.randint(10, 150)
            wait_for_exit_or(lambda: _fact_count(stack.engine) >= goal, workers[-1], 120,
                             f"the statistics worker {n} to make progress")
            time.sleep(rng.uniform(0, 0.5))
            for worker in workers:
                worker.kill()
    finally:
        sent = producing.stop(after=AFTER_THE_LAST_KILL)

    ledger, facts = _clean_run(embedded_postgres, template, sent)
    assert _fact_count(stack.engine) < sum(facts.values()), "facts were still to be recorded at the last start"
    restarted = time.monotonic()
    last = start()
    sent_ids = ids[:len(sent)]
    for worker in last:
        wait_for_exit_or(lambda: decided_count(stack.engine, sent_ids) == len(sent)
                         and _fact_count(stack.engine) >= sum(facts.values()), worker, 300,
                         "the last workers to apply and record everything")
    report_recovery(f"{fault}: restart to first fact recorded, longest of {KILLS}", max(back_after))
    report_recovery(f"{fault}: last restart to every fact recorded ({len(sent)} events sent)",
                    time.monotonic() - restarted)
    time.sleep(2)  # a fact or an entry recorded twice would show up now
    assert all(worker.alive for worker in last)
    assert ledger_summary(stack.engine) == ledger
    assert _facts(stack.engine) == facts
    with stack.engine.connect() as conn:  # exactly one fact for every entry that has one
        assert conn.execute(text("SELECT count(*) FROM stats_facts f LEFT JOIN entries e ON e.id = f.entry_id "
                                 "WHERE e.id IS NULL")).scalar() == 0
    assert_ledger_verified(stack.engine)


def test_the_statistics_worker_killed_under_load_records_each_entry_once(
    stack: Stack, embedded_postgres: str, primary_template: str
) -> None:
    ledger = stack.start_worker(only="ledger")  # runs throughout; only the statistics are killed
    _killed_under_load(stack, embedded_postgres, primary_template, 51,
                       lambda: [stack.start_worker(only="statistics")], "statistics worker SIGKILL")
    assert ledger.alive, ledger.log_tail()


def test_both_workers_killed_at_once_under_load_end_with_the_clean_ledger_and_facts(
    stack: Stack, embedded_postgres: str, primary_template: str
) -> None:
    _killed_under_load(stack, embedded_postgres, primary_template, 52,
                       lambda: [stack.start_worker(only="ledger"), stack.start_worker(only="statistics")],
                       "ledger and statistics workers SIGKILL at once")
