"""Facts for the statistics, one per committed ledger entry, written idempotently (by entry id).

Hours count on the day they were worked (the hours log), everything else on the UK calendar day it happened;
a reversal counts, negatively, where the entry it corrects counted.

tc.ledger is delivered at least once, so the same entry may arrive twice: the fact's primary key is the
entry id and a repeat changes nothing. That is why the figures live in PostgreSQL rather than in faust
tables: a faust table updated per message without Kafka transactions would count a redelivered entry twice,
and the figures must agree with the ledger to the hundredth of a credit.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, func, select

from ledger.pg import schema
from ledger.pg.schema import any_of
from ledger.pg.bulk import insert_rows_ignoring_conflicts
from ledger.domain import EntryKind
from ledger.events import CommittedEntry, EntryCommitted

#: Read back from tc.ledger (validated), or handed over by the ledger in the same process (tests, tools).
LedgerEntry = EntryCommitted | CommittedEntry

LONDON = ZoneInfo("Europe/London")


def write_facts(engine: Engine, entries: Sequence[LedgerEntry]) -> int:
    """Record facts for `entries` in one transaction; returns how many were new."""
    if not entries:
        return 0
    with engine.begin() as conn:
        rows = facts_for(conn, entries)
        if not rows:
            return 0
        return insert_rows_ignoring_conflicts(conn, schema.stats_facts, rows)


def facts_for(conn: Connection, entries: Sequence[LedgerEntry]) -> list[dict[str, Any]]:
    e, d, logs, op = schema.entries, schema.hours_decisions, schema.hours_logs, schema.opportunities
    by_event = {entry.event_id: entry for entry in entries}
    related_ids = {entry.related_event_id for entry in entries if entry.kind == EntryKind.ENTRY_REVERSED.value}
    originals: dict[Any, Any] = {}
    if related_ids - set(by_event):
        for row in conn.execute(
            select(e.c.id, e.c.event_id, e.c.kind, e.c.occurred_at, e.c.volunteer_id, e.c.org_id, e.c.opportunity_id)
            .where(e.c.event_id.in_(list(related_ids - set(by_event))))
        ):
            originals[row.event_id] = row
    entry_ids = [entry.entry_id for entry in entries] + [row.id for row in originals.values()]
    worked: dict[int, tuple[int, date, str]] = {
        row.entry_id: (row.minutes, row.worked_on, row.category)
        for row in conn.execute(
            select(d.c.entry_id, logs.c.minutes, logs.c.worked_on, logs.c.category)
            .join(logs, logs.c.event_id == d.c.log_event_id)
            .where(any_of(d.c.entry_id, entry_ids))
        )
    }
    opportunity_ids = {entry.opportunity_id for entry in entries if entry.opportunity_id}
    opportunity_ids |= {row.opportunity_id for row in originals.values() if row.opportunity_id}
    categories = dict(conn.execute(select(op.c.id, op.c.category).where(any_of(op.c.id, list(opportunity_ids)))).all()) \
        if opportunity_ids else {}
    partners = {entry.org_id for entry in entries if entry.org_id} | {row.org_id for row in originals.values()}
    partner_category = _main_categories(conn, partners)

    def category(kind: str, opportunity_id: str | None, org_id: str | None) -> str | None:
        """Spending's category: the opportunity's, else what the partner mostly offers; none for hours or gifts."""
        if kind not in _SPENDING:
            return None
        return categories.get(opportunity_id) or partner_category.get(org_id) or "other"

    facts = []
    for entry in entries:
        amount = max(p.amount for p in entry.postings)
        if entry.kind == EntryKind.ENTRY_REVERSED.value:
            original = by_event.get(entry.related_event_id)  # type: ignore[arg-type]
            if original is not None:
                base = (original.entry_id, original.kind, original.occurred_at, original.volunteer_id,
                        original.org_id, original.opportunity_id, _recipient(original))
            else:
                row = originals[entry.related_event_id]
                base = (row.id, row.kind, row.occurred_at, row.volunteer_id, row.org_id, row.opportunity_id,
                        _recipient_of_postings(entry, row.volunteer_id))
            original_id, kind, occurred_at, volunteer_id, org_id, opportunity_id, recipient = base
            minutes, day, activity = worked.get(original_id, (0, _local_day(occurred_at), None))
            facts.append(_fact(entry.entry_id, kind, day, volunteer_id, recipient, org_id,
                               category(kind, opportunity_id, org_id), activity, amount, minutes, -1, original_id))
        else:
            minutes, day, activity = worked.get(entry.entry_id, (0, _local_day(entry.occurred_at), None))
            facts.append(_fact(entry.entry_id, entry.kind, day, entry.volunteer_id, _recipient(entry),
                               entry.org_id, category(entry.kind, entry.opportunity_id, entry.org_id), activity,
                               amount, minutes, 1, None))
    return facts


_SPENDING = frozenset({EntryKind.OPPORTUNITY_BOOKED.value, EntryKind.BOOKING_CANCELLED.value,
                       EntryKind.BOOKING_ATTENDED.value, EntryKind.CREDITS_REDEEMED.value})


def _main_categories(conn: Connection, partner_ids: set[str | None]) -> dict[str, str]:
    """Each partner's most offered category of opportunity (ties: alphabetical)."""
    ids = [p for p in partner_ids if p]
    if not ids:
        return {}
    op = schema.opportunities
    counts = conn.execute(
        select(op.c.partner_id, op.c.category, func.count()).where(any_of(op.c.partner_id, ids))
        .group_by(op.c.partner_id, op.c.category)
    ).all()
    best: dict[str, tuple[int, str]] = {}
    for partner, category, count in counts:
        if partner not in best or (-count, category) < (-best[partner][0], best[partner][1]):
            best[partner] = (count, category)
    return {partner: category for partner, (_, category) in best.items()}


def _recipient(entry: LedgerEntry) -> str | None:
    if entry.kind != EntryKind.CREDITS_GIFTED.value:
        return None
    return next(p.account.split(":", 1)[1] for p in entry.postings if p.amount > 0)


def _recipient_of_postings(reversal: LedgerEntry, sender: str | None) -> str | None:
    """A reversed gift's recipient is the volunteer account the reversal takes credits back from."""
    taken = [p.account.split(":", 1)[1] for p in reversal.postings if p.amount < 0 and p.account.startswith("volunteer:")]
    return taken[0] if taken and taken[0] != sender else None


def _local_day(moment: datetime) -> date:
    """The programme's calendar day of a moment: periods are UK months and quarters."""
    return moment.astimezone(LONDON).date()


def _fact(entry_id: int, kind: str, day: date, volunteer_id: str | None, other: str | None, org_id: str | None,
          category: str | None, activity_category: str | None, amount: int, minutes: int, sign: int,
          original_entry_id: int | None) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "kind": kind,
        "occurred_on": day,
        "volunteer_id": volunteer_id,
        "other_volunteer_id": other,
        "org_id": org_id,
        "category": category,
        "activity_category": activity_category,
        "amount": amount,
        "minutes": minutes,
        "sign": sign,
        "original_entry_id": original_entry_id,
    }
