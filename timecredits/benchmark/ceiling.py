"""The ceilings the ingest figure is read against, measured on the same server in the same run.

- **Same-schema ceiling**: the ledger rows a run produced (entries, postings, batch links), written straight into
  the ledger tables of a fresh database with one INSERT per 1,000 entries: no Kafka, no Python rules, only
  PostgreSQL storing the same rows under the same constraints and triggers.
- **Plain ceiling**: the rows an event must leave at the very least (an entry with its event id and hash, two
  postings), keys only, in tables with no trigger or check, one INSERT per 1,000 events and a commit a batch.

Ingest divided by each tells what the pipeline costs on top of the storage it cannot avoid, and what the
ledger's own checks cost on top of storing anything at all.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from itertools import groupby

from psycopg2.extras import execute_values
from sqlalchemy import Engine, create_engine, text

ENTRY_COLUMNS = ("id", "event_id", "kind", "occurred_at", "recorded_at", "volunteer_id", "org_id", "opportunity_id",
                 "related_entry_id", "hash", "link_id")
LINK_COLUMNS = ("id", "chain_key", "seq", "prev_link", "link", "entry_count", "recorded_at")
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
    """Copy `source`'s ledger into the empty, migrated database at `target_url`, about 1,000 entries an INSERT,
    and time it.

    Accounts are created first and not timed (the pipeline creates them as it goes, but they are few). Whole
    links are copied together, each after its entries (a link seals the entries written before it), and each
    group of about 1,000 entries is one transaction, as a worker's batch is.
    """
    with source.connect() as conn:
        accounts = conn.execute(text("SELECT key, kind, owner_id, created_at FROM accounts ORDER BY key")).all()
        entries = conn.execute(text(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM entries "
                                    "WHERE link_id IS NOT NULL ORDER BY link_id, id")).all()
        links = {row[0]: tuple(row) for row in conn.execute(text(f"SELECT {', '.join(LINK_COLUMNS)} FROM chain_links"))}
        postings: dict[int, list[tuple[int, str, int]]] = {}
        for entry_id, account, amount in conn.execute(text("SELECT entry_id, account_key, amount FROM postings")):
            postings.setdefault(entry_id, []).append((entry_id, account, amount))
    groups: list[tuple[list[tuple[object, ...]], list[tuple[object, ...]]]] = [([], [])]
    for link_id, members in groupby(entries, key=lambda entry: entry[-1]):
        if len(groups[-1][0]) >= ROWS_PER_INSERT:
            groups.append(([], []))
        groups[-1][0].extend(tuple(e) for e in members)
        groups[-1][1].append(links[link_id])
    target = create_engine(target_url, pool_size=1)
    raw = target.raw_connection()
    try:
        with raw.cursor() as cursor:
            execute_values(cursor, "INSERT INTO accounts (key, kind, owner_id, created_at) VALUES %s", accounts,
                           page_size=ROWS_PER_INSERT)
        raw.commit()
        started = time.perf_counter()
        written = 0
        for batch, batch_links in groups:
            if not batch:
                continue
            rows = [p for entry in batch for p in postings[entry[0]]]  # type: ignore[index]
            with raw.cursor() as cursor:
                execute_values(cursor, f"INSERT INTO entries ({', '.join(ENTRY_COLUMNS)}) VALUES %s", batch,
                               page_size=len(batch))
                # One statement: the database checks each entry whole at the end of the statement.
                execute_values(cursor, "INSERT INTO postings (entry_id, account_key, amount) VALUES %s", rows,
                               page_size=len(rows))
                execute_values(cursor, f"INSERT INTO chain_links ({', '.join(LINK_COLUMNS)}) VALUES %s", batch_links,
                               page_size=len(batch_links))
                written += len(rows)
            raw.commit()
        seconds = time.perf_counter() - started
    finally:
        raw.close()
        target.dispose()
    return CeilingResult(len(entries), written, seconds)


PLAIN_SCHEMA = """
CREATE TABLE plain_entries (id bigint PRIMARY KEY, event_id uuid NOT NULL UNIQUE, hash bytea NOT NULL);
CREATE TABLE plain_postings (entry_id bigint NOT NULL, account_key text NOT NULL, amount bigint NOT NULL,
                             PRIMARY KEY (entry_id, account_key));
"""


def run_plain_ceiling(target_url: str, events: int) -> CeilingResult:
    """`events` synthetic events as the least rows each must leave, in an empty database at `target_url`."""
    target = create_engine(target_url, pool_size=1)
    raw = target.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute(PLAIN_SCHEMA)
        raw.commit()
        started = time.perf_counter()
        for start in range(0, events, ROWS_PER_INSERT):
            ids = range(start + 1, min(start + ROWS_PER_INSERT, events) + 1)
            entry_rows = [(n, str(uuid.UUID(int=n)), hashlib.sha256(n.to_bytes(8, "big")).digest()) for n in ids]
            posting_rows = [row for n in ids for row in ((n, f"volunteer:v{n % 20_000}", 100), (n, "issuer:org", -100))]
            with raw.cursor() as cursor:
                execute_values(cursor, "INSERT INTO plain_entries (id, event_id, hash) VALUES %s", entry_rows,
                               page_size=len(entry_rows))
                execute_values(cursor, "INSERT INTO plain_postings (entry_id, account_key, amount) VALUES %s",
                               posting_rows, page_size=len(posting_rows))
            raw.commit()
        seconds = time.perf_counter() - started
    finally:
        raw.close()
        target.dispose()
    return CeilingResult(events, 2 * events, seconds)
