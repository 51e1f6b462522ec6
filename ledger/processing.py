"""Apply a batch of consumed events to the registry, the hours flow and the ledger, in one transaction.

This is what a worker calls for each batch it takes from Kafka. Every item gets an outcome, in order:
applied (with the entry it made, if any), or rejected with a reason code that is recorded in `rejections`
so `GET /v1/events/{id}` can tell it later. Items seen before get their first outcome back, marked
duplicate, and change nothing: delivery is at least once, the effect exactly once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Connection, Engine, Text, func, literal, null, select, union_all
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import Label

from ledger import schema
from ledger.schema import any_of
from ledger.bulk import copy_rows
from ledger.domain import EntryDraft, Posting, Rejection
from ledger.events import CommittedEntry, DecodedEvent, Undecodable
from ledger.intake import (
    BatchRegistry,
    HoursDecision,
    HoursLog,
    Opportunity,
    Organisation,
    Plan,
    RegistryUpsert,
    plan_event,
)
from ledger.repository import (
    Applied,
    LedgerWriter,
    Rejected,
    database_reason,
    lock_chain,
    write_rejections,
)

Item = DecodedEvent | Undecodable


@dataclass(frozen=True, slots=True)
class EventOutcome:
    event_id: UUID | None
    type: str | None
    status: str  # "applied" | "rejected"
    entry_id: int | None = None
    reason: str | None = None
    message: str | None = None
    duplicate: bool = False

    @property
    def applied(self) -> bool:
        return self.status == "applied"


@dataclass
class BatchResult:
    outcomes: list[EventOutcome]
    committed: list[CommittedEntry] = field(default_factory=list)  # entries to publish on tc.ledger


class EventProcessor:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def process(self, items: Sequence[Item]) -> BatchResult:
        """One transaction for the batch; should PostgreSQL refuse it, one transaction an item instead."""
        if not items:
            return BatchResult([])
        try:
            with self._engine.begin() as conn:
                return _BatchProcess(conn).run(items)
        except DBAPIError as error:
            reason = database_reason(error)
            if reason is None:
                raise
            if len(items) > 1:
                results = [self.process([item]) for item in items]
                return BatchResult(
                    [o for r in results for o in r.outcomes], [c for r in results for c in r.committed]
                )
            return BatchResult([self._record_refusal(items[0], reason, str(error.orig).strip())])

    def _record_refusal(self, item: Item, reason: str, message: str) -> EventOutcome:
        with self._engine.begin() as conn:
            lock_chain(conn)
            if item.event_id is not None:
                seen = _decided(conn, [item.event_id])
                if item.event_id in seen:
                    return _duplicate(seen[item.event_id])
                write_rejections(conn, [Rejected(item.event_id, reason, message)])
        return EventOutcome(item.event_id, item.type, "rejected", reason=reason, message=message)


class _BatchProcess:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def run(self, items: Sequence[Item]) -> BatchResult:
        conn = self._conn
        ids = [item.event_id for item in items if item.event_id is not None]
        decided = _decided(conn, ids)
        fresh = [i for i in items if isinstance(i, DecodedEvent) and i.event_id not in decided]
        registry = _load_registry(conn, fresh)

        slots: list[EventOutcome | Plan] = []
        seen_in_batch: dict[UUID, int] = {}
        refusals: list[Rejected] = []
        for item in items:
            if item.event_id is not None and item.event_id in decided:
                slots.append(_duplicate(decided[item.event_id]))
                continue
            if item.event_id is not None and item.event_id in seen_in_batch:
                slots.append(_RepeatOf(seen_in_batch[item.event_id]))  # type: ignore[arg-type]
                continue
            if item.event_id is not None:
                seen_in_batch[item.event_id] = len(slots)
            if isinstance(item, Undecodable):
                if item.event_id is not None:
                    refusals.append(Rejected(item.event_id, item.reason, item.detail))
                slots.append(EventOutcome(item.event_id, item.type, "rejected", reason=item.reason, message=item.detail))
                continue
            try:
                plan = plan_event(item, registry)
            except Rejection as refused:
                refusals.append(Rejected(item.event_id, refused.reason.value, refused.message))
                slots.append(EventOutcome(item.event_id, item.type, "rejected", reason=refused.reason.value,
                                          message=refused.message))
                continue
            registry.accept(plan)
            slots.append(plan)

        plans = [slot for slot in slots if isinstance(slot, Plan)]
        _upsert_registry(conn, [u for plan in plans for u in plan.registry])
        _insert_hours_logs(conn, [plan.hours_log for plan in plans if plan.hours_log is not None])
        writer = LedgerWriter(conn)
        commands = [plan.command for plan in plans if plan.command is not None]
        ledger_outcomes = dict(zip([c.event_id for c in commands], writer.apply(commands, looked_up=True)))
        decisions: list[tuple[HoursDecision, int | None]] = []
        outcomes: list[EventOutcome] = []
        for slot in slots:
            if isinstance(slot, _RepeatOf):
                outcomes.append(_duplicate(outcomes[slot.index]))
            elif isinstance(slot, EventOutcome):
                outcomes.append(slot)
            else:
                outcome = _plan_outcome(slot, ledger_outcomes)
                if slot.decision is not None and outcome.applied:
                    decisions.append((slot.decision, outcome.entry_id))
                outcomes.append(outcome)
        _insert_decisions(conn, decisions)
        write_rejections(conn, refusals)
        committed = [_committed(entry_id, draft) for entry_id, draft, _ in writer.committed]
        # A batch delivered again after a crash may have committed before tc.ledger heard of it: say it again.
        repeated = sorted({o.entry_id for o in outcomes if o.duplicate and o.entry_id is not None})
        return BatchResult(outcomes, committed + load_committed(conn, repeated))


@dataclass(frozen=True, slots=True)
class _RepeatOf:
    index: int


def _plan_outcome(plan: Plan, ledger_outcomes: dict[UUID, Applied | Rejected]) -> EventOutcome:
    event = plan.event
    if plan.command is None:
        return EventOutcome(event.event_id, event.type, "applied")
    result = ledger_outcomes[plan.command.event_id]
    if isinstance(result, Rejected):
        return EventOutcome(event.event_id, event.type, "rejected", reason=result.reason, message=result.message)
    return EventOutcome(event.event_id, event.type, "applied", entry_id=result.entry_id)


def _duplicate(outcome: EventOutcome) -> EventOutcome:
    return EventOutcome(outcome.event_id, outcome.type, outcome.status, outcome.entry_id, outcome.reason,
                        outcome.message, duplicate=True)


def _committed(entry_id: int, draft: EntryDraft) -> CommittedEntry:
    return CommittedEntry(
        entry_id=entry_id,
        event_id=draft.event_id,
        kind=draft.kind.value,
        occurred_at=draft.occurred_at,
        volunteer_id=draft.volunteer_id,
        org_id=draft.org_id,
        opportunity_id=draft.opportunity_id,
        related_event_id=draft.related_event_id,
        postings=draft.postings,
    )


def _decided(conn: Connection, event_ids: Sequence[UUID]) -> dict[UUID, EventOutcome]:
    """Every event among `event_ids` that was processed before, with its outcome (one round trip)."""
    ids = list(set(event_ids))
    if not ids:
        return {}
    e, r, logs, d = schema.entries, schema.rejections, schema.hours_logs, schema.hours_decisions
    # Where one event id is in several tables, the later source wins: a rejection over an entry over a decision.
    sources = union_all(
        select(logs.c.event_id.label("event_id"), literal(0).label("source"), _null_as("entry_id", BigInteger),
               _null_as("reason", Text), _null_as("message", Text)).where(any_of(logs.c.event_id, ids)),
        select(d.c.decision_event_id, literal(1), _null_as("entry_id", BigInteger), _null_as("reason", Text),
               _null_as("message", Text)).where(any_of(d.c.decision_event_id, ids)),
        select(e.c.event_id, literal(2), e.c.id, _null_as("reason", Text), _null_as("message", Text))
        .where(any_of(e.c.event_id, ids)),
        select(r.c.event_id, literal(3), _null_as("entry_id", BigInteger), r.c.reason, r.c.message)
        .where(any_of(r.c.event_id, ids)),
    ).subquery()
    found: dict[UUID, EventOutcome] = {}
    for event_id, source, entry_id, reason, message in conn.execute(select(sources).order_by(sources.c.source)):
        if source == 0:
            found[event_id] = EventOutcome(event_id, "HoursLogged", "applied")
        elif source == 3:
            found[event_id] = EventOutcome(event_id, None, "rejected", reason=reason, message=message)
        else:
            found[event_id] = EventOutcome(event_id, None, "applied", entry_id=entry_id)
    return found


def _null_as(name: str, type_: type[BigInteger] | type[Text]) -> Label[Any]:
    """A typed NULL column, for the sources of a UNION that lack it."""
    return null().cast(type_).label(name)


def count_decided(engine: Engine, event_ids: Sequence[UUID]) -> int:
    """How many of `event_ids` have been processed (applied or rejected): progress for loaders and tests."""
    with engine.connect() as conn:
        return len(_decided(conn, event_ids))


def event_status(engine: Engine, event_id: UUID) -> EventOutcome | None:
    """What became of an event, or None while it is pending (not processed yet)."""
    with engine.connect() as conn:
        return _decided(conn, [event_id]).get(event_id)


def _load_registry(conn: Connection, events: Sequence[DecodedEvent]) -> BatchRegistry:
    volunteer_ids: set[str] = set()
    org_ids: set[str] = set()
    opportunity_ids: set[str] = set()
    log_ids: set[UUID] = set()
    for event in events:
        p = event.payload
        for name in ("volunteer_id", "from_volunteer_id", "to_volunteer_id"):
            if isinstance(getattr(p, name, None), str):
                volunteer_ids.add(getattr(p, name))
        for name in ("org_id", "partner_id"):
            if isinstance(getattr(p, name, None), str):
                org_ids.add(getattr(p, name))
        if isinstance(getattr(p, "opportunity_id", None), str):
            opportunity_ids.add(p.opportunity_id)  # type: ignore[attr-defined]
        if isinstance(getattr(p, "log_event_id", None), UUID):
            log_ids.add(p.log_event_id)  # type: ignore[attr-defined]

    v, o, op, logs, d = schema.volunteers, schema.organisations, schema.opportunities, schema.hours_logs, schema.hours_decisions
    volunteers = set(conn.execute(select(v.c.id).where(any_of(v.c.id, list(volunteer_ids)))).scalars()) if volunteer_ids else set()
    organisations = {
        row.id: Organisation(row.id, frozenset(row.kinds), row.auto_approve)
        for row in conn.execute(select(o.c.id, o.c.kinds, o.c.auto_approve).where(any_of(o.c.id, list(org_ids))))
    } if org_ids else {}
    opportunities = {
        row.id: Opportunity(row.id, row.partner_id, row.cost)
        for row in conn.execute(select(op.c.id, op.c.partner_id, op.c.cost).where(any_of(op.c.id, list(opportunity_ids))))
    } if opportunity_ids else {}
    hours: dict[UUID, HoursLog] = {}
    decided: set[UUID] = set()
    if log_ids:
        for row in conn.execute(select(logs).where(any_of(logs.c.event_id, list(log_ids)))):
            hours[row.event_id] = HoursLog(row.event_id, row.volunteer_id, row.org_id, row.worked_on, row.minutes,
                                           row.activity, row.logged_at, row.actor)
        decided = set(conn.execute(select(d.c.log_event_id).where(any_of(d.c.log_event_id, list(log_ids)))).scalars())
    return BatchRegistry(volunteers, organisations, opportunities, hours, decided)


_REGISTRY_TABLES = {
    "organisations": schema.organisations,
    "volunteers": schema.volunteers,
    "opportunities": schema.opportunities,
}


def _upsert_registry(conn: Connection, upserts: list[RegistryUpsert]) -> None:
    """In order, a later event about the same entity winning: one statement a run of consecutive upserts of the
    same table and columns (one a row had made registering 20,000 volunteers take 17 s). Within a run only an
    id's last row is written, as a statement may not update the same row twice; runs keep their order."""
    for table_name, rows in _runs(upserts):
        table = _REGISTRY_TABLES[table_name]
        latest = list({row["id"]: row for row in rows}.values())
        statement = insert(table).values(latest)
        changes = {name: statement.excluded[name] for name in rows[0] if name != "id"}
        conn.execute(statement.on_conflict_do_update(index_elements=["id"], set_={**changes, "updated_at": func.now()}))


def _runs(upserts: list[RegistryUpsert]) -> list[tuple[str, list[dict[str, object]]]]:
    """Consecutive upserts of one table with the same columns, grouped, in order."""
    runs: list[tuple[str, list[dict[str, object]]]] = []
    for upsert in upserts:
        if runs and runs[-1][0] == upsert.table and runs[-1][1][0].keys() == upsert.row.keys():
            runs[-1][1].append(upsert.row)
        else:
            runs.append((upsert.table, [upsert.row]))
    return runs


def _insert_hours_logs(conn: Connection, logs: list[HoursLog]) -> None:
    copy_rows(conn, schema.hours_logs, [
        {
            "event_id": log.event_id,
            "volunteer_id": log.volunteer_id,
            "org_id": log.org_id,
            "worked_on": log.worked_on,
            "minutes": log.minutes,
            "activity": log.activity,
            "logged_at": log.logged_at,
            "actor": log.actor,
        }
        for log in logs
    ])


def _insert_decisions(conn: Connection, decisions: list[tuple[HoursDecision, int | None]]) -> None:
    copy_rows(conn, schema.hours_decisions, [
        {
            "log_event_id": decision.log_event_id,
            "decision_event_id": decision.decision_event_id,
            "decision": "approved" if decision.approved else "rejected",
            "reason": decision.reason,
            "entry_id": entry_id,
            "decided_at": decision.decided_at,
        }
        for decision, entry_id in decisions
    ])


def load_committed(conn: Connection, entry_ids: Sequence[int]) -> list[CommittedEntry]:
    """Entries already in the ledger, as published on tc.ledger (to publish again after a crash)."""
    if not entry_ids:
        return []
    e, p = schema.entries, schema.postings
    related = schema.entries.alias("related")
    rows = conn.execute(
        select(e.c.id, e.c.event_id, e.c.kind, e.c.occurred_at, e.c.volunteer_id, e.c.org_id, e.c.opportunity_id,
               related.c.event_id)
        .outerjoin(related, related.c.id == e.c.related_entry_id)
        .where(any_of(e.c.id, list(entry_ids)))
        .order_by(e.c.id)
    ).all()
    postings: dict[int, list[Posting]] = {}
    for entry_id, account, amount in conn.execute(
        select(p.c.entry_id, p.c.account_key, p.c.amount).where(any_of(p.c.entry_id, list(entry_ids)))
    ):
        postings.setdefault(entry_id, []).append(Posting(account, amount))
    return [
        CommittedEntry(entry_id=r[0], event_id=r[1], kind=r[2], occurred_at=r[3], volunteer_id=r[4], org_id=r[5],
                       opportunity_id=r[6], related_event_id=r[7], postings=tuple(postings[r[0]]))
        for r in rows
    ]
