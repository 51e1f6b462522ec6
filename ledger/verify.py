"""Recompute the hash chain and every balance from the postings (docs/design.md §3, invariant 5).

Reads the whole ledger once, in entry order, as a stream; stops at the first mismatch and names it.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import groupby

from sqlalchemy import Engine, select

from ledger import schema
from ledger.accounts import NON_NEGATIVE_KINDS, split_account_key
from ledger.domain import Posting
from ledger.hashing import GENESIS_HASH, entry_hash


@dataclass
class VerifyReport:
    entries_checked: int = 0
    postings_checked: int = 0
    accounts_checked: int = 0
    head_hash: bytes = GENESIS_HASH
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_ledger(engine: Engine, on_entries: Callable[[int], None] | None = None) -> VerifyReport:
    """Check every entry's link, hash and balance, then every stored balance against the postings."""
    report = VerifyReport()
    computed: defaultdict[str, int] = defaultdict(int)
    with engine.connect() as conn:
        for entry in _entries_in_order(conn):
            problem = _entry_problem(entry, report.head_hash)
            if problem:
                report.problem = problem
                return report
            for posting in entry.postings:
                computed[posting.account] += posting.amount
            report.head_hash = entry.hash
            report.entries_checked += 1
            report.postings_checked += len(entry.postings)
            if on_entries and report.entries_checked % 10_000 == 0:
                on_entries(report.entries_checked)
        b = schema.balances
        stored = dict(conn.execute(select(b.c.account_key, b.c.balance)).all())
    for account in sorted(set(stored) | set(computed)):
        report.accounts_checked += 1
        if account not in stored:
            report.problem = f"account {account}: has postings but no balance row"
            return report
        if stored[account] != computed[account]:
            report.problem = (
                f"account {account}: stored balance {stored[account]} but its postings sum to {computed[account]}"
            )
            return report
        kind, _ = split_account_key(account)
        if kind in NON_NEGATIVE_KINDS and computed[account] < 0:
            report.problem = f"account {account}: negative balance {computed[account]}"
            return report
    return report


@dataclass(frozen=True, slots=True)
class _StoredEntry:
    id: int
    event_id: object
    kind: str
    occurred_at: object
    recorded_at: object
    volunteer_id: str | None
    org_id: str | None
    opportunity_id: str | None
    related_event_id: object
    prev_hash: bytes
    hash: bytes
    postings: tuple[Posting, ...]


def _entries_in_order(conn) -> Iterator[_StoredEntry]:  # type: ignore[no-untyped-def]
    e, p = schema.entries, schema.postings
    related = schema.entries.alias("related")
    query = (
        select(
            e.c.id, e.c.event_id, e.c.kind, e.c.occurred_at, e.c.recorded_at, e.c.volunteer_id, e.c.org_id,
            e.c.opportunity_id, related.c.event_id, e.c.prev_hash, e.c.hash, p.c.account_key, p.c.amount,
        )
        .outerjoin(related, related.c.id == e.c.related_entry_id)
        .outerjoin(p, p.c.entry_id == e.c.id)
        .order_by(e.c.id)
    )
    rows = conn.execution_options(stream_results=True, yield_per=5_000).execute(query)
    for _, group in groupby(rows, key=lambda row: row[0]):
        members = list(group)
        first = members[0]
        postings = tuple(Posting(row[11], row[12]) for row in members if row[11] is not None)
        yield _StoredEntry(*first[:11], postings=postings)


def _entry_problem(entry: _StoredEntry, expected_prev: bytes) -> str | None:
    name = f"entry {entry.id} (event {entry.event_id})"
    if bytes(entry.prev_hash) != expected_prev:
        return f"{name}: prev_hash does not match the hash of the entry before it"
    if len(entry.postings) < 2 or sum(p.amount for p in entry.postings) != 0:
        return f"{name}: {len(entry.postings)} postings summing to {sum(p.amount for p in entry.postings)}"
    digest = entry_hash(
        prev_hash=expected_prev,
        event_id=entry.event_id,
        kind=entry.kind,
        occurred_at=entry.occurred_at,
        recorded_at=entry.recorded_at,
        volunteer_id=entry.volunteer_id,
        org_id=entry.org_id,
        opportunity_id=entry.opportunity_id,
        related_event_id=entry.related_event_id,
        postings=entry.postings,
    )
    if digest != bytes(entry.hash):
        return f"{name}: stored hash does not match its contents (tampered or corrupted)"
    return None
