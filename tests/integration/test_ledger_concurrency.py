"""Two processes applying overlapping batches at once end with the ledger one process would make."""
from __future__ import annotations

import multiprocessing
import random
import uuid
from typing import Any

from sqlalchemy import Engine, create_engine, text

from ledger.domain import (
    AttendBooking,
    BookOpportunity,
    CancelBooking,
    EarnCredits,
    GiftCredits,
    LedgerCommand,
    RedeemCredits,
)
from ledger.repository import Applied, LedgerRepository
from ledger.verify import verify_ledger
from tests.ledger_helpers import NOW
from tests.postgres import fresh_database

VOLUNTEERS = [f"v{n}" for n in range(40)]


def _workload(seed: int = 7) -> tuple[list[LedgerCommand], list[list[LedgerCommand]]]:
    """Seed credits, then batches whose outcome does not depend on the order they are applied in.

    Every volunteer spends far less than they were seeded with, and a booking is settled in its own batch.
    """
    rng = random.Random(seed)
    ids = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)  # noqa: E731
    seed_batch: list[LedgerCommand] = [EarnCredits(ids(), NOW, v, "org1", 20_000) for v in VOLUNTEERS]
    batches: list[list[LedgerCommand]] = []
    for _ in range(30):
        batch: list[LedgerCommand] = []
        while len(batch) < 60:
            v = rng.choice(VOLUNTEERS)
            roll = rng.random()
            if roll < 0.3:
                batch.append(RedeemCredits(ids(), NOW, v, rng.choice(["p1", "p2"]), rng.randint(1, 40)))
            elif roll < 0.6:
                batch.append(GiftCredits(ids(), NOW, v, rng.choice([w for w in VOLUNTEERS if w != v]), rng.randint(1, 40)))
            else:
                booking = BookOpportunity(ids(), NOW, v, "p1", rng.randint(1, 40))
                settle = AttendBooking if rng.random() < 0.7 else CancelBooking
                batch += [booking, settle(ids(), NOW, booking.event_id)]
        batches.append(batch)
    return seed_batch, batches


def _apply_in_process(database_url: str, order: str, barrier: Any, results: Any) -> None:
    engine = create_engine(database_url)
    _, batches = _workload()
    if order == "backward":
        batches = batches[::-1]
    repository = LedgerRepository(engine)
    barrier.wait()
    fresh = sum(1 for batch in batches for outcome in repository.apply_batch(batch) if not outcome.duplicate)
    results.put(fresh)
    engine.dispose()


def _ledger(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as conn:
        entries = conn.execute(
            text(
                "SELECT e.event_id, e.kind, array_agg(p.account_key || '=' || p.amount ORDER BY p.account_key) "
                "FROM entries e JOIN postings p ON p.entry_id = e.id GROUP BY e.event_id, e.kind ORDER BY e.event_id"
            )
        ).all()
        balances = conn.execute(text("SELECT account_key, balance FROM balances ORDER BY 1")).all()
        rejections = conn.execute(text("SELECT count(*) FROM rejections")).scalar()
    return entries, balances, rejections


def test_two_processes_with_overlapping_batches_match_one_process(
    engine: Engine, database_url: str, pg_server: str, pg_template: str
) -> None:
    seed_batch, batches = _workload()
    LedgerRepository(engine).apply_batch(seed_batch)

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_apply_in_process, args=(database_url, order, barrier, results))
        for order in ("forward", "backward")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    fresh_counts = [results.get(timeout=5), results.get(timeout=5)]
    total_commands = sum(len(batch) for batch in batches)
    assert sum(fresh_counts) == total_commands, "every event applied exactly once between the two processes"
    assert min(fresh_counts) > 0, "both processes did part of the work"

    with fresh_database(pg_server, pg_template) as reference_url:
        reference = create_engine(reference_url)
        repository = LedgerRepository(reference)
        outcomes = [o for batch in [seed_batch, *batches] for o in repository.apply_batch(batch)]
        assert all(isinstance(o, Applied) for o in outcomes)
        expected = _ledger(reference)
        reference.dispose()

    assert _ledger(engine) == expected
    assert verify_ledger(engine).ok
