"""Spend codes on PostgreSQL: made by the API for the volunteer, looked up for the partner, and the wrong codes
that limit guessing (docs/design.md §5.6). The use of a code is written by the ledger worker, not here."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from ledger.pg import schema
from ledger.spend_codes import code_digest, new_code

#: Wrong codes are counted over this window.
GUESS_WINDOW = timedelta(minutes=15)
#: Rows of wrong codes older than this are deleted when another is written.
_FAILURES_KEPT = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class StoredCode:
    id: uuid.UUID
    volunteer_id: str
    partner_id: str
    max_amount: int
    created_at: datetime
    expires_at: datetime
    used: bool


def create_code(conn: Connection, volunteer_id: str, partner_id: str, max_amount: int, valid_for: timedelta,
                now: datetime) -> tuple[StoredCode, str]:
    """A new code and its digits (shown once). Digits a partner's earlier code had are drawn again, in a
    savepoint, so that the digits name one code of the partner's."""
    for _ in range(10):
        code_id, code = uuid.uuid4(), new_code()
        row = {"id": code_id, "volunteer_id": volunteer_id, "partner_id": partner_id, "max_amount": max_amount,
               "code_hash": code_digest(partner_id, code), "created_at": now, "expires_at": now + valid_for}
        try:
            with conn.begin_nested():
                conn.execute(insert(schema.spend_codes).values(row))
        except IntegrityError:
            continue
        return StoredCode(code_id, volunteer_id, partner_id, max_amount, now, now + valid_for, False), code
    raise RuntimeError("no free spend code digits after 10 draws")


def find_code(conn: Connection, partner_id: str, code: str) -> StoredCode | None:
    c, u = schema.spend_codes, schema.spend_code_uses
    row = conn.execute(
        select(c.c.id, c.c.volunteer_id, c.c.partner_id, c.c.max_amount, c.c.created_at, c.c.expires_at,
               select(u.c.code_id).where(u.c.code_id == c.c.id).exists())
        .where(c.c.partner_id == partner_id, c.c.code_hash == code_digest(partner_id, code))
    ).first()
    return StoredCode(*row) if row else None


def recent_failures(conn: Connection, actor: str, now: datetime) -> list[datetime]:
    """When `actor`'s wrong codes within the window were typed, oldest first."""
    f = schema.spend_code_failures
    return list(conn.execute(select(f.c.failed_at).where(f.c.actor == actor, f.c.failed_at > now - GUESS_WINDOW)
                             .order_by(f.c.failed_at)).scalars())


def record_failure(conn: Connection, actor: str, now: datetime) -> None:
    f = schema.spend_code_failures
    conn.execute(delete(f).where(f.c.failed_at < now - _FAILURES_KEPT))
    conn.execute(insert(f).values(actor=actor, failed_at=now))

