"""Words typed about an event, kept where they can be erased (docs/design.md §5.16): an hours log's description
and a rejection's reason, in `event_notes` keyed by the event id, never on Kafka or in an append-only table.

Written by whoever publishes the event, in the transaction that commits only once the broker has it; read back
by every page, export and report as a column of their own query."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from uuid import UUID

from sqlalchemy import ColumnElement, Connection, func, select
from sqlalchemy.dialects.postgresql import insert

from ledger.pg import schema

NoteKind = Literal["hours_activity", "rejection_reason"]
HOURS_ACTIVITY: NoteKind = "hours_activity"
REJECTION_REASON: NoteKind = "rejection_reason"


def write(conn: Connection, event_id: UUID, kind: NoteKind, text: str) -> None:
    """Keep `text` for `event_id` (nothing for blank text). Written once: a retried request's event id is the same,
    and so are its words."""
    write_many(conn, [(event_id, kind, text)])


def write_many(conn: Connection, notes: Sequence[tuple[UUID, NoteKind, str]]) -> None:
    """`write` for many events in one statement (a spreadsheet's rows)."""
    rows = [{"event_id": event_id, "kind": kind, "text": text.strip()} for event_id, kind, text in notes
            if text.strip()]
    if rows:
        conn.execute(insert(schema.event_notes).values(rows).on_conflict_do_nothing(index_elements=["event_id"]))


def _note(event_id: ColumnElement[UUID], kind: NoteKind) -> ColumnElement[str]:
    n = schema.event_notes
    found = select(n.c.text).where(n.c.event_id == event_id, n.c.kind == kind).scalar_subquery()
    return func.coalesce(found, "")


def activity_of(log_event_id: ColumnElement[UUID]) -> ColumnElement[str]:
    """The description of the hours logged as `log_event_id` ("" if none, or erased), as a query's column."""
    return _note(log_event_id, HOURS_ACTIVITY)


def rejection_reason_of(decision_event_id: ColumnElement[UUID]) -> ColumnElement[str]:
    """Why the hours were rejected by `decision_event_id` ("" if not said, or erased), as a query's column."""
    return _note(decision_event_id, REJECTION_REASON)
