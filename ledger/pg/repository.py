"""Reads of the ledger (balances, statements) and what the database's refusals mean.

Writes go through one path only, `ledger.pg.processing.EventProcessor` (docs/design.md §2).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import Connection, Engine, Select, Text, bindparam, exists, literal, select
from sqlalchemy.exc import DBAPIError

from ledger.accounts import holds_account, volunteer_account
from ledger.domain import EntryKind, Posting, Reason, RecordedEntry
from ledger.pg import schema
from ledger.pg.schema import any_of

@dataclass(frozen=True, slots=True)
class StatementLine:
    entry_id: int
    event_id: UUID
    kind: EntryKind
    occurred_at: datetime
    amount: int  # this account's side of the entry, in hundredths
    related_event_id: UUID | None


@dataclass(frozen=True, slots=True)
class VolunteerBalance:
    volunteer_id: str
    available: int
    held: int

    @property
    def total(self) -> int:
        return self.available + self.held


#: Reasons the database gives (constraint name or message prefix) mapped to the contract's reason codes.
_DATABASE_REASONS = {
    "balance_not_negative": Reason.INSUFFICIENT_CREDITS.value,
    "entries_related_once": "already_referred",
    "entries_prev_hash_key": "broken_chain",
    "broken_chain": "broken_chain",
    "unbalanced_entry": "unbalanced_entry",
    "bad_reversal": "bad_reversal",
    "not_a_booking": Reason.NOT_A_BOOKING.value,
    "bad_hash": "bad_hash",
    "spend_code_uses_pkey": "code_used",
}


#: Constraints that refuse a second writer of the same chain: not the fault of any one event.
_CHAIN_CONFLICTS = {"chain_links_no_fork", "chain_links_seq_key"}


def is_write_conflict(error: DBAPIError) -> bool:
    """True when the database refused a batch for what a concurrent writer did, not for anything in the batch:
    another writer extended one of its chains first, or a deadlock or serialisation failure (class 40) between
    two writers of overlapping events. The batch is to be decided again, on what is committed now."""
    diag = getattr(error.orig, "diag", None)
    if diag is None:
        return False
    return diag.constraint_name in _CHAIN_CONFLICTS or (diag.sqlstate or "").startswith("40")


#: What `database_reason` gives a refusal (SQLSTATE 23xxx) naming none of the constraints above: enough to split
#: a batch (a concurrent writer's unique event id, or one event's known refusal among good ones), but never a
#: reason to record an event as rejected. A constraint this code does not know is not the event's fault: a schema
#: migrated ahead of the code (say, a CHECK every new row of the old code fails) would otherwise turn every
#: event into a permanent rejection. The single event is left undecided and the error raised instead.
UNKNOWN_CONSTRAINT = "integrity_violation"


def database_reason(error: DBAPIError) -> str | None:
    """The contract reason for an integrity error the database raised, or None for any other failure."""
    diag = getattr(error.orig, "diag", None)
    if diag is None or not (diag.sqlstate or "").startswith("23"):
        return None
    if diag.constraint_name in _DATABASE_REASONS:
        return _DATABASE_REASONS[diag.constraint_name]
    token = (diag.message_primary or "").split(":", 1)[0]
    return _DATABASE_REASONS.get(token, UNKNOWN_CONSTRAINT)


def _balance_query() -> Select[tuple[int | None, int | None]]:
    """A registered volunteer's available and held balances in one statement (no row for an unknown one)."""
    v, b = schema.volunteers, schema.balances
    available, held = b.alias("available"), b.alias("held")
    volunteer_id = bindparam("volunteer_id", type_=Text)
    return (
        select(available.c.balance, held.c.balance)
        .select_from(v)
        .outerjoin(available, available.c.account_key == literal(volunteer_account("x")[:-1]) + volunteer_id)
        .outerjoin(held, held.c.account_key == literal(holds_account("x")[:-1]) + volunteer_id)
        .where(v.c.id == volunteer_id)
    )


def recorded_entry(conn: Connection, event_id: UUID) -> RecordedEntry | None:
    """The committed entry of `event_id`, as the ledger's rules see it (for checks made before an event is
    produced, such as a correction's, docs/design.md §5.14); None when there is none."""
    e, p = schema.entries, schema.entries.alias("settling")
    row = conn.execute(select(e.c.id, e.c.kind, e.c.volunteer_id, e.c.org_id, e.c.opportunity_id, e.c.occurred_at,
                              exists().where(p.c.related_entry_id == e.c.id))
                       .where(e.c.event_id == event_id)).first()
    if row is None:
        return None
    postings = conn.execute(select(schema.postings.c.account_key, schema.postings.c.amount)
                            .where(schema.postings.c.entry_id == row.id)).all()
    return RecordedEntry(event_id, EntryKind(row.kind), tuple(Posting(a, n) for a, n in postings), row.volunteer_id,
                         row.org_id, row.opportunity_id, bool(row[6]), row.occurred_at)


#: Built once: the API runs it for every balance read, and building its aliases per call is wasted work.
BALANCE_QUERY = _balance_query()


class LedgerRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # --- reading ------------------------------------------------------------------------------

    def balance(self, account: str) -> int:
        with self._engine.connect() as conn:
            value = conn.execute(
                select(schema.balances.c.balance).where(schema.balances.c.account_key == account)
            ).scalar_one_or_none()
        return value or 0

    def volunteer_balance(self, volunteer_id: str) -> VolunteerBalance:
        keys = {volunteer_account(volunteer_id): "available", holds_account(volunteer_id): "held"}
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(schema.balances.c.account_key, schema.balances.c.balance).where(
                    any_of(schema.balances.c.account_key, list(keys))
                )
            ).all()
        found = {keys[key]: value for key, value in rows}
        return VolunteerBalance(volunteer_id, found.get("available", 0), found.get("held", 0))

    def registered_volunteer_balance(self, volunteer_id: str) -> VolunteerBalance | None:
        """The balance of a registered volunteer, None for an unknown one: one round trip, for the API's reads."""
        with self._engine.connect() as conn:
            row = conn.execute(BALANCE_QUERY, {"volunteer_id": volunteer_id}).first()
        if row is None:
            return None
        return VolunteerBalance(volunteer_id, row[0] or 0, row[1] or 0)

    def statement(self, account: str, *, limit: int = 50, before_entry_id: int | None = None) -> list[StatementLine]:
        """The account's entries, newest first; pass the last line's entry_id as `before_entry_id` for the next page."""
        e, p = schema.entries, schema.postings
        related = schema.entries.alias("related")
        query = (
            select(e.c.id, e.c.event_id, e.c.kind, e.c.occurred_at, p.c.amount, related.c.event_id)
            .join(e, e.c.id == p.c.entry_id)
            .outerjoin(related, related.c.id == e.c.related_entry_id)
            .where(p.c.account_key == account)
            .order_by(p.c.entry_id.desc())
            .limit(limit)
        )
        if before_entry_id is not None:
            query = query.where(p.c.entry_id < before_entry_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [StatementLine(r[0], r[1], EntryKind(r[2]), r[3], r[4], r[5]) for r in rows]
