"""Figure 2, the ceiling: the ledger rows a run produced, written straight into the ledger tables of a fresh
database with one INSERT per 1,000 rows: no Kafka, no Python rules, only PostgreSQL storing the same rows
under the same constraints and triggers. The ratio of the end-to-end rate to this one is what the pipeline
costs on top of the storage it cannot avoid."""
from __future__ import annotations

import time
from dataclasses import dataclass

from psycopg2.extras import execute_values
from sqlalchemy import Engine, create_engine, text

ENTRY_COLUMNS = ("id", "event_id", "kind", "occurred_at", "recorded_at", "volunteer_id", "org_id", "opportunity_id",
                 "related_entry_id", "prev_hash", "hash")
ROWS_PER_INSERT = 1000


@dataclass(frozen=True)
class CeilingResult:
    entries: int
    postings: int
    seconds: float

    @property
    def entries_per_second(self) -> float:
        return self.entries / self.seconds


def run_ceiling(source: Engine, target_url: str) -> CeilingResult:
    """Copy `source`'s ledger into the empty, migrated database at `target_url`, 1,000 rows an INSERT, and time it.

    Accounts are created first and not timed (the pipeline creates them as it goes, but they are few).
    Each batch of 1,000 entries and their postings is one transaction, as a worker's batch is.
    """
    with source.connect() as conn:
        accounts = conn.execute(text("SELECT key, kind, owner_id, created_at FROM accounts ORDER BY key")).all()
        entries = conn.execute(text(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM entries ORDER BY id")).all()
        postings: dict[int, list[tuple[int, str, int]]] = {}
        for entry_id, account, amount in conn.execute(text("SELECT entry_id, account_key, amount FROM postings")):
            postings.setdefault(entry_id, []).append((entry_id, account, amount))
    target = create_engine(target_url, pool_size=1)
    raw = target.raw_connection()
    try:
        with raw.cursor() as cursor:
            execute_values(cursor, "INSERT INTO accounts (key, kind, owner_id, created_at) VALUES %s", accounts,
                           page_size=ROWS_PER_INSERT)
        raw.commit()
        started = time.perf_counter()
        written = 0
        for start in range(0, len(entries), ROWS_PER_INSERT):
            batch = entries[start : start + ROWS_PER_INSERT]
            with raw.cursor() as cursor:
                execute_values(cursor, f"INSERT INTO entries ({', '.join(ENTRY_COLUMNS)}) VALUES %s",
                               [tuple(e) for e in batch], page_size=ROWS_PER_INSERT)
                for rows in _pages_of_whole_entries([postings[entry[0]] for entry in batch]):
                    execute_values(cursor, "INSERT INTO postings (entry_id, account_key, amount) VALUES %s", rows,
                                   page_size=len(rows))
                    written += len(rows)
            raw.commit()
        seconds = time.perf_counter() - started
    finally:
        raw.close()
        target.dispose()
    return CeilingResult(len(entries), written, seconds)


def _pages_of_whole_entries(per_entry: list[list[tuple[int, str, int]]]) -> list[list[tuple[int, str, int]]]:
    """Postings in pages of at most 1,000 rows, never splitting an entry (the database checks each entry whole)."""
    pages: list[list[tuple[int, str, int]]] = [[]]
    for rows in per_entry:
        if len(pages[-1]) + len(rows) > ROWS_PER_INSERT:
            pages.append([])
        pages[-1].extend(rows)
    return [page for page in pages if page]
