"""The fault matrix: the ledger worker killed with SIGKILL again and again under load (docs/operations.md, "The
fault matrix").

Events arrive at a steady rate throughout. Each worker is killed once it has applied a random number of events,
after a random pause: at a random moment within a batch (applying it, publishing its entries, committing its
offsets), and a new one is started in the same consumer group, as `timecredits up` restarts it. The ledger
runs alone (`worker --only ledger`), as `up` runs it. A batch not committed is delivered again, and the
ledger applies each event id once (docs/design.md §2): the end is the ledger one clean pass over the same events
makes, verified.
"""
from __future__ import annotations

import random
import statistics
import time

import pytest

from ledger.pg.processing import EventProcessor
from tests.e2e.conftest import Stack
from tests.e2e.faults import SteadyProducer, assert_ledger_verified, report_recovery, wait_for_exit_or
from tests.e2e.stack import decided_count, ledger_summary
from tests.e2e.test_faults import _backlog, _event_ids, _reference, _registry

pytestmark = [pytest.mark.broker, pytest.mark.integration]

KILLS = 20
#: Events a second: each restart finds a few hundred waiting (the dead member's 3 s session timeout and the new
#: one's start), so the kills land in large batches as well as in the small ones of the steady flow.
RATE = 40.0
#: Events sent after the last kill, while no worker runs: the last worker has those to apply at least.
AFTER_THE_LAST_KILL = 50


def test_a_ledger_worker_killed_20_times_under_load_ends_with_the_clean_ledger(
    stack: Stack, embedded_postgres: str, primary_template: str
) -> None:
    rng = random.Random(6)
    EventProcessor(stack.engine).process(_registry())
    records = _backlog(20_000, seed=22)  # more than the kills take at RATE: what is not sent is left out
    ids = _event_ids(records)
    producing = SteadyProducer(stack, records, RATE)

    def decided() -> int:
        return decided_count(stack.engine, ids[:producing.sent])

    back_after: list[float] = []
    try:
        for n in range(KILLS):
            before = decided()
            restarted = time.monotonic()
            worker = stack.start_worker(only="ledger")
            wait_for_exit_or(lambda: decided() > before, worker, 120, f"worker {n} to apply events")
            back_after.append(time.monotonic() - restarted)
            goal = decided() + rng.randint(10, 200)
            wait_for_exit_or(lambda: decided() >= goal, worker, 120, f"worker {n} to make progress")
            time.sleep(rng.uniform(0, 0.5))
            worker.kill()
    finally:
        sent = producing.stop(after=AFTER_THE_LAST_KILL)
    sent_ids = ids[:len(sent)]
    assert decided_count(stack.engine, sent_ids) < len(sent), "events arrived while no worker ran"

    restarted = time.monotonic()
    last = stack.start_worker(only="ledger")
    wait_for_exit_or(lambda: decided_count(stack.engine, sent_ids) == len(sent), last, 300,
                     "the last worker to finish the backlog")
    report_recovery(f"ledger worker SIGKILL x{KILLS}: restart to first event applied, median "
                    f"{statistics.median(back_after):.1f} s, longest", max(back_after))
    report_recovery(f"ledger worker SIGKILL x{KILLS}: last restart to the backlog applied ({len(sent)} events sent)",
                    time.monotonic() - restarted)
    time.sleep(2)  # a duplicate applied late would show up now
    assert last.alive, last.log_tail()
    assert ledger_summary(stack.engine) == _reference(embedded_postgres, primary_template, sent)
    assert_ledger_verified(stack.engine)
