"""The ledger on PostgreSQL: applies a batch of commands in one transaction, reads balances and statements.

The database has the last word on every invariant (see the migration 0001_ledger). The rules in
`ledger.domain` decide each command first so that one refused command does not fail its batch; should the
database still refuse a batch, the batch is applied again one command a transaction, and a command the
database refuses on its own is recorded as rejected with the database's reason.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Text,
    bindparam,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from ledger import schema
from ledger.accounts import holds_account, split_account_key, volunteer_account
from ledger.batch import BatchView, accounts_to_prefetch, referenced_event_ids
from ledger.bulk import copy_rows, insert_rows_ignoring_conflicts
from ledger.domain import (
    EntryDraft,
    EntryKind,
    LedgerCommand,
    Posting,
    Reason,
    RecordedEntry,
    Rejection,
    draft_entry,
)
from ledger.hashing import GENESIS_HASH, entry_hash
from ledger.schema import any_of

#: Must equal tc_chain_lock_key() in the migration: one writer of the hash chain at a time.
CHAIN_LOCK_KEY = 7465636865626


@dataclass(frozen=True, slots=True)
class Applied:
    event_id: UUID
    entry_id: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    event_id: UUID
    reason: str
    message: str
    duplicate: bool = False


Outcome = Applied | Rejected


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
    "unbalanced_entry": "unbalanced_entry",
    "bad_reversal": "bad_reversal",
    "not_a_booking": Reason.NOT_A_BOOKING.value,
    "bad_hash": "bad_hash",
}


def database_reason(error: DBAPIError) -> str | None:
    """The contract reason for an integrity error the database raised, or None for any other failure."""
    diag = getattr(error.orig, "diag", None)
    if diag is None or not (diag.sqlstate or "").startswith("23"):
        return None
    if diag.constraint_name in _DATABASE_REASONS:
        return _DATABASE_REASONS[diag.constraint_name]
    token = (diag.message_primary or "").split(":", 1)[0]
    return _DATABASE_REASONS.get(token, "integrity_violation")


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


#: Built once: the API runs it for every balance read, and building its aliases per call is wasted work.
BALANCE_QUERY = _balance_query()


class LedgerRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # --- writing ------------------------------------------------------------------------------

    def apply_batch(self, commands: Sequence[LedgerCommand]) -> list[Outcome]:
        """Apply `commands` in order, in one transaction; one outcome per command, in the same order.

        Idempotent by event id: a command whose event was decided before (applied or rejected) gets the
        earlier outcome back, marked `duplicate`, and changes nothing.
        """
        if not commands:
            return []
        try:
            with self._engine.begin() as conn:
                return LedgerWriter(conn).apply(commands)
        except DBAPIError as error:
            reason = database_reason(error)
            if reason is None:
                raise
            if len(commands) > 1:
                return [outcome for command in commands for outcome in self.apply_batch([command])]
            return [self._record_database_rejection(commands[0], reason, str(error.orig).strip())]

    def _record_database_rejection(self, command: LedgerCommand, reason: str, message: str) -> Outcome:
        with self._engine.begin() as conn:
            lock_chain(conn)
            decided = _decided_outcomes(conn, [command.event_id])
            if command.event_id in decided:
                return _as_duplicate(decided[command.event_id])
            rejected = Rejected(command.event_id, reason, message)
            write_rejections(conn, [rejected])
        return rejected

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

    def outcome(self, event_id: UUID) -> Outcome | None:
        """What became of an event: applied (with its entry), rejected (with the reason), or None if unseen."""
        with self._engine.connect() as conn:
            return _decided_outcomes(conn, [event_id]).get(event_id)


class LedgerWriter:
    """One batch inside one transaction: load what the rules need, decide, then lock the chain and write.

    After `apply`, `committed` lists the entries written, as (entry id, draft, recorded_at).
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._existing_accounts: set[str] = set()
        self.committed: list[tuple[int, EntryDraft, datetime]] = []

    def apply(self, commands: Sequence[LedgerCommand], *, looked_up: bool = False) -> list[Outcome]:
        """`looked_up`: the caller has just found, in this transaction, that none of the commands' events was
        decided before, so the lookup is not made twice (should a concurrent writer have decided one since,
        the unique event id refuses the batch and it is applied again item by item)."""
        conn = self._conn
        decided = {} if looked_up else _decided_outcomes(conn, [c.event_id for c in commands])
        referenced, referenced_ids = _load_entries(conn, referenced_event_ids(commands))
        prefetch = accounts_to_prefetch(commands, referenced.values())
        loaded = _load_balances(conn, prefetch)
        self._existing_accounts = {account for account, found in loaded.items() if found is not None}
        view = BatchView({account: found or 0 for account, found in loaded.items()}, referenced, self._load_balance)

        outcomes: list[Outcome | EntryDraft | _RepeatInBatch] = []
        drafts: dict[UUID, EntryDraft] = {}
        rejections: list[Rejected] = []
        for command in commands:
            if command.event_id in drafts:
                outcomes.append(_RepeatInBatch(command.event_id))
                continue
            if command.event_id in decided:
                outcomes.append(_as_duplicate(decided[command.event_id]))
                continue
            try:
                draft = draft_entry(command, view)
            except Rejection as refused:
                rejected = Rejected(command.event_id, refused.reason.value, refused.message)
                rejections.append(rejected)
                decided[command.event_id] = _as_duplicate(rejected)
                outcomes.append(rejected)
                continue
            view.accept(draft)
            drafts[command.event_id] = draft
            outcomes.append(draft)

        entry_ids = self._write_entries(list(drafts.values()), referenced_ids)
        write_rejections(conn, rejections)
        return [_resolve(outcome, entry_ids) for outcome in outcomes]

    def _load_balance(self, account: str) -> int:
        found = _load_balances(self._conn, {account})[account]
        if found is not None:
            self._existing_accounts.add(account)
        return found or 0

    def _write_entries(self, drafts: list[EntryDraft], known_ids: dict[UUID, int]) -> dict[UUID, int]:
        if not drafts:
            return {}
        conn = self._conn
        # The chain lock is taken here, not when the transaction starts: everything before (lookups, the rules)
        # runs beside other writers, and only numbering, hashing and writing are one writer at a time. What a
        # concurrent writer changed meanwhile cannot slip through: the database checks balances, the chain,
        # unique event ids and single settlement itself, and a batch it refuses is applied again item by item.
        lock_chain(conn)
        new_ids = conn.execute(
            text("SELECT nextval('entries_id_seq') FROM generate_series(1, :n)"), {"n": len(drafts)}
        ).scalars().all()
        ids = dict(known_ids)
        ids.update({draft.event_id: entry_id for draft, entry_id in zip(drafts, sorted(new_ids))})

        head = conn.execute(select(schema.entries.c.hash).order_by(schema.entries.c.id.desc()).limit(1)).scalar()
        prev_hash = head or GENESIS_HASH
        recorded_at = _now()
        entry_rows, posting_rows = [], []
        for draft in drafts:
            digest = entry_hash(
                prev_hash=prev_hash,
                event_id=draft.event_id,
                kind=draft.kind.value,
                occurred_at=draft.occurred_at,
                recorded_at=recorded_at,
                volunteer_id=draft.volunteer_id,
                org_id=draft.org_id,
                opportunity_id=draft.opportunity_id,
                related_event_id=draft.related_event_id,
                postings=draft.postings,
            )
            entry_id = ids[draft.event_id]
            entry_rows.append(
                {
                    "id": entry_id,
                    "event_id": draft.event_id,
                    "kind": draft.kind.value,
                    "occurred_at": draft.occurred_at,
                    "recorded_at": recorded_at,
                    "volunteer_id": draft.volunteer_id,
                    "org_id": draft.org_id,
                    "opportunity_id": draft.opportunity_id,
                    "related_entry_id": ids[draft.related_event_id] if draft.related_event_id else None,
                    "prev_hash": prev_hash,
                    "hash": digest,
                }
            )
            posting_rows.extend(
                {"entry_id": entry_id, "account_key": p.account, "amount": p.amount} for p in draft.postings
            )
            prev_hash = digest
            self.committed.append((entry_id, draft, recorded_at))

        new_accounts = sorted({row["account_key"] for row in posting_rows} - self._existing_accounts)
        insert_rows_ignoring_conflicts(conn, schema.accounts, [_account_row(key, recorded_at) for key in new_accounts])
        copy_rows(conn, schema.entries, entry_rows)
        copy_rows(conn, schema.postings, posting_rows)  # one statement: the database checks each entry whole
        return ids


@dataclass(frozen=True, slots=True)
class _RepeatInBatch:
    """A command whose event id came earlier in the same batch."""

    event_id: UUID


def _resolve(outcome: Outcome | EntryDraft | _RepeatInBatch, entry_ids: dict[UUID, int]) -> Outcome:
    if isinstance(outcome, EntryDraft):
        return Applied(outcome.event_id, entry_ids[outcome.event_id])
    if isinstance(outcome, _RepeatInBatch):
        return Applied(outcome.event_id, entry_ids[outcome.event_id], duplicate=True)
    return outcome


def lock_chain(conn: Connection) -> None:
    """Serialise writers of the ledger for the rest of the transaction (re-entrant within it)."""
    conn.execute(select(func.pg_advisory_xact_lock(CHAIN_LOCK_KEY)))


def write_rejections(conn: Connection, rejections: Sequence[Rejected]) -> None:
    recorded_at = _now()
    copy_rows(conn, schema.rejections, [
        {"event_id": r.event_id, "reason": r.reason, "message": r.message, "recorded_at": recorded_at}
        for r in rejections
    ])


def _now() -> datetime:
    return datetime.now(UTC)


def _account_row(key: str, created_at: datetime) -> dict[str, object]:
    kind, owner = split_account_key(key)
    return {"key": key, "kind": kind.value, "owner_id": owner, "created_at": created_at}


def _as_duplicate(outcome: Outcome) -> Outcome:
    if isinstance(outcome, Applied):
        return Applied(outcome.event_id, outcome.entry_id, duplicate=True)
    return Rejected(outcome.event_id, outcome.reason, outcome.message, duplicate=True)


def _decided_outcomes(conn: Connection, event_ids: Sequence[UUID]) -> dict[UUID, Outcome]:
    ids = list(set(event_ids))
    e, r = schema.entries, schema.rejections
    decided: dict[UUID, Outcome] = {
        event_id: Applied(event_id, entry_id)
        for event_id, entry_id in conn.execute(select(e.c.event_id, e.c.id).where(any_of(e.c.event_id, ids)))
    }
    for event_id, reason, message in conn.execute(
        select(r.c.event_id, r.c.reason, r.c.message).where(any_of(r.c.event_id, ids))
    ):
        decided[event_id] = Rejected(event_id, reason, message)
    return decided


def _load_balances(conn: Connection, accounts: set[str]) -> dict[str, int | None]:
    """Balances of the named accounts; None for an account that does not exist yet."""
    if not accounts:
        return {}
    b = schema.balances
    found = dict(conn.execute(select(b.c.account_key, b.c.balance).where(any_of(b.c.account_key, list(accounts)))).all())
    return {account: found.get(account) for account in accounts}


def _load_entries(conn: Connection, event_ids: set[UUID]) -> tuple[dict[UUID, RecordedEntry], dict[UUID, int]]:
    """Entries named by event id, with their postings and whether anything already refers to them."""
    if not event_ids:
        return {}, {}
    e, p = schema.entries, schema.postings
    referrer = schema.entries.alias("referrer")
    closed = select(referrer.c.id).where(referrer.c.related_entry_id == e.c.id).exists()
    rows = conn.execute(
        select(e.c.id, e.c.event_id, e.c.kind, e.c.volunteer_id, e.c.org_id, e.c.opportunity_id, closed).where(
            any_of(e.c.event_id, list(event_ids))
        )
    ).all()
    if not rows:
        return {}, {}
    postings: dict[int, list[Posting]] = {}
    for entry_id, account, amount in conn.execute(
        select(p.c.entry_id, p.c.account_key, p.c.amount).where(any_of(p.c.entry_id, [row[0] for row in rows]))
    ):
        postings.setdefault(entry_id, []).append(Posting(account, amount))
    entries = {
        row[1]: RecordedEntry(
            event_id=row[1],
            kind=EntryKind(row[2]),
            postings=tuple(postings.get(row[0], ())),
            volunteer_id=row[3],
            org_id=row[4],
            opportunity_id=row[5],
            closed=row[6],
        )
        for row in rows
    }
    return entries, {row[1]: row[0] for row in rows}
