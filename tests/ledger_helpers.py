"""Builders shared by ledger tests: commands with fresh ids, and raw SQL writes that bypass the Python rules."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from ledger.accounts import split_account_key
from ledger.domain import Posting
from ledger.hashing import GENESIS_HASH, entry_hash

NOW = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def insert_raw_entry(
    conn: Connection,
    postings: list[Posting],
    *,
    kind: str = "hours_approved",
    event_id: uuid.UUID | None = None,
    related_entry_id: int | None = None,
    prev_hash: bytes | None = None,
    correct_hash: bool = True,
) -> int:
    """Write an entry and its postings with plain SQL, as an attacker or a buggy client would.

    The hash is computed correctly unless told otherwise, so that the database's other checks are what is tested.
    """
    event_id = event_id or new_id()
    head = conn.execute(text("SELECT hash FROM entries ORDER BY id DESC LIMIT 1")).scalar()
    prev = prev_hash if prev_hash is not None else (bytes(head) if head else GENESIS_HASH)
    related_event = None
    if related_entry_id is not None:
        related_event = conn.execute(text("SELECT event_id FROM entries WHERE id = :id"), {"id": related_entry_id}).scalar()
    recorded_at = datetime.now(UTC)
    digest = entry_hash(
        prev_hash=prev,
        event_id=event_id,
        kind=kind,
        occurred_at=NOW,
        recorded_at=recorded_at,
        volunteer_id=None,
        org_id=None,
        opportunity_id=None,
        related_event_id=related_event,
        postings=postings,
    )
    if not correct_hash:
        digest = bytes(32 - len(b"forged")) + b"forged"
    entry_id = conn.execute(text("SELECT nextval('entries_id_seq')")).scalar_one()
    for posting in postings:
        kind_, owner = split_account_key(posting.account)
        conn.execute(
            text("INSERT INTO accounts (key, kind, owner_id) VALUES (:k, :kind, :o) ON CONFLICT DO NOTHING"),
            {"k": posting.account, "kind": kind_.value, "o": owner},
        )
    conn.execute(
        text(
            "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, related_entry_id, prev_hash, hash) "
            "VALUES (:id, :event_id, :kind, :occurred_at, :recorded_at, :related, :prev, :hash)"
        ),
        {
            "id": entry_id,
            "event_id": event_id,
            "kind": kind,
            "occurred_at": NOW,
            "recorded_at": recorded_at,
            "related": related_entry_id,
            "prev": prev,
            "hash": digest,
        },
    )
    # All postings in one statement: the database checks an entry whole at the end of the statement that
    # inserts its postings (migration 0005), so a half-written entry is refused on the spot.
    values = ", ".join(f"(:e, :a{n}, :amount{n})" for n in range(len(postings)))
    params: dict[str, Any] = {"e": entry_id}
    for n, posting in enumerate(postings):
        params.update({f"a{n}": posting.account, f"amount{n}": posting.amount})
    conn.execute(text(f"INSERT INTO postings (entry_id, account_key, amount) VALUES {values}"), params)
    return entry_id


def scalar(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).scalar()
