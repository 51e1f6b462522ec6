"""The audit log of administrative acts, for the API, the web app and the CLI alike (docs/design.md §5.14):
append-only, ids and codes only, read by admins."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, insert, select

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.spreadsheet_cells import inert
from ledger.pg import schema

#: The acts the log records; the database's `audit_log_action_known` check holds the same list.
ACTIONS = ("entry_correction_requested", "membership_started", "membership_ended", "token_issued", "token_revoked",
           "person_disabled", "consent_recorded", "volunteer_erased")
MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    event_id: UUID | None
    detail: dict[str, Any]


def actor_of(principal: Principal) -> str:
    """Who did it: the person signed in to the web app when it is one, else the credential's actor."""
    return f"person:{principal.person_id}" if principal.person_id is not None else principal.actor


def record(conn: Connection, principal: Principal | str, action: str, subject: str, *, event_id: UUID | None = None,
           **detail: str | bool | int | None) -> None:
    """One row, in the caller's transaction: the act and its record commit together or not at all. `detail` takes
    codes and ids only, never a person's words."""
    assert action in ACTIONS, action
    actor = principal if isinstance(principal, str) else actor_of(principal)
    if not isinstance(principal, str) and principal.person_id is not None:
        detail.setdefault("as", principal.actor)
    conn.execute(insert(schema.audit_log).values(
        actor=actor, action=action, subject=subject, event_id=event_id,
        detail={k: v for k, v in detail.items() if v is not None}))


def may_read(principal: Principal) -> None:
    if principal.role is not Role.ADMIN:
        raise forbid("only an admin reads the audit log")


def rows(services: Services, principal: Principal, *, action: str | None = None, subject: str | None = None,
         since: datetime | None = None, until: datetime | None = None, before: int | None = None,
         limit: int | None = MAX_PAGE) -> list[AuditRow]:
    """Newest first; `before` an id for the next page; `limit` None for every matching row (the CSV)."""
    may_read(principal)
    a = schema.audit_log
    query = select(a.c.id, a.c.at, a.c.actor, a.c.action, a.c.subject, a.c.event_id, a.c.detail).order_by(a.c.id.desc())
    if action:
        query = query.where(a.c.action == action)
    if subject:
        query = query.where(a.c.subject == subject)
    if since is not None:
        query = query.where(a.c.at >= since)
    if until is not None:
        query = query.where(a.c.at < until)
    if before is not None:
        query = query.where(a.c.id < before)
    if limit is not None:
        query = query.limit(limit)
    with services.engine.connect() as conn:
        return [AuditRow(*row) for row in conn.execute(query)]


CSV_HEADER = ("id", "at", "actor", "action", "subject", "event_id", "detail")


def as_csv(found: list[AuditRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for row in found:
        detail = "; ".join(f"{k}={v}" for k, v in sorted(row.detail.items()))
        writer.writerow([str(row.id), row.at.isoformat(), inert(row.actor), row.action, inert(row.subject),
                         str(row.event_id or ""), inert(detail)])
    return out.getvalue()
