"""Writers at once: two processes applying overlapping batches end with the ledger one process would make, and
a worker's transaction held open mid-batch does not stop another worker, on another chain, from committing."""
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
from ledger.pg.processing import run_batch
from ledger.pg.verify import verify_ledger
from tests.ledger_helpers import NOW, LedgerDriver
from tests.postgres import fresh_database

VOLUNTEERS = [f"v{n}" for n in range(40)]


def _workload(seed: int = 7) -> tuple[list[LedgerCommand], list[list[LedgerCommand]]]:
    """Seed credits, then batches whose outcome does not depend on the order they are applied in.

    Every volunteer spends far less than they were seeded with, and a booking is settled in its own batch.
    """
    rng = random.Random(seed)
    ids = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)  # noqa: E731
    # 200 credits each, as ten logs of 20 hours (a log is at most a day's hours).
    seed_batch: list[LedgerCommand] = [EarnCredits(ids(), NOW, v, "org1", 2_000) for v in VOLUNTEERS for _ in range(10)]
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
    driver = LedgerDriver(engine, chain=order)  # two partitions' chains, as two workers would write
    barrier.wait()
    fresh = sum(1 for batch in batches for outcome in driver.apply(batch) if not outcome.duplicate)
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
    LedgerDriver(engine).apply(seed_batch)

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
        driver = LedgerDriver(reference)
        outcomes = [o for batch in [seed_batch, *batches] for o in driver.apply(batch)]
        assert all(o.applied for o in outcomes)
        expected = _ledger(reference)
        reference.dispose()

    assert _ledger(engine) == expected
    assert verify_ledger(engine).ok


def test_a_worker_holding_its_transaction_open_does_not_stop_another_chain_from_committing(engine: Engine) -> None:
    """Worker A has written its batch on chain tc.activity/0 and not committed; worker B, on tc.activity/1, decides,
    writes and commits its own batch meanwhile. With one lock for the whole ledger, B would wait for A."""
    import threading

    from ledger.pg.processing import EventProcessor

    a, b = LedgerDriver(engine, chain="tc.activity/0"), LedgerDriver(engine, chain="tc.activity/1")
    a.apply([EarnCredits(uuid.uuid4(), NOW, "va", "org-a", 500)])  # registers A's world and starts its chain
    b.apply([EarnCredits(uuid.uuid4(), NOW, "vb", "org-b", 500)])
    a_events = [a.event(RedeemCredits(uuid.uuid4(), NOW, "va", "org-a", 100))]
    b_events = [b.event(RedeemCredits(uuid.uuid4(), NOW, "vb", "org-b", 100)) for _ in range(3)]

    with engine.connect() as held:
        transaction = held.begin()
        [outcome] = run_batch(held, a_events, ["tc.activity/0"]).outcomes  # written, locks held, not committed
        assert outcome.applied

        finished = threading.Event()
        results: list[Any] = []

        def worker_b() -> None:
            results.append(EventProcessor(engine).process(b_events, ["tc.activity/1"] * 3))
            finished.set()

        threading.Thread(target=worker_b, daemon=True).start()
        committed_meanwhile = finished.wait(timeout=30)
        with engine.connect() as conn:
            b_seq = conn.execute(text("SELECT max(seq) FROM chain_links WHERE chain_key = 'tc.activity/1'")).scalar()
            a_seq = conn.execute(text("SELECT max(seq) FROM chain_links WHERE chain_key = 'tc.activity/0'")).scalar()
        transaction.commit()

    assert committed_meanwhile, "worker B waited for worker A's transaction"
    assert all(o.applied for o in results[0].outcomes)
    assert (a_seq, b_seq) == (1, 2), "B's batch was committed while A's was still open"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT max(seq) FROM chain_links WHERE chain_key = 'tc.activity/0'")).scalar() == 2
    assert verify_ledger(engine).ok
