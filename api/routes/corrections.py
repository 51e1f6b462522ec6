"""Corrections with reasons, and the audit log an admin reads (docs/design.md §5.14)."""
from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from api.auth import Principal, Role
from api.deps import ServicesDep, require
from api.errors import ApiError, responses
from api.models import Accepted, Request, Text500
from api.services import audit, corrections
from ledger.events import CalendarDate, CorrectionReason

router = APIRouter(prefix="/v1", tags=["corrections"])

OrgOrAdmin = Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


class Reverse(Request):
    reason: Text500 = Field(description="why, in words: kept in PostgreSQL where it can be erased, shown to the "
                                        "volunteer on their statement, never on Kafka")
    reason_code: CorrectionReason = "other"


@router.post("/entries/{event_id}/reverse", status_code=202, response_model=Accepted,
             responses=responses(400, 401, 403, 404, 409, 422, 503))
def reverse(event_id: UUID, body: Reverse, services: ServicesDep, principal: OrgOrAdmin) -> Accepted:
    """Correct an entry (named by its event id) with its mirror: an admin any reversible entry; an organisation
    its own approvals of hours, for 30 days. Each entry is corrected once (`409 already_reversed`)."""
    return Accepted(event_id=corrections.reverse(services, principal, event_id, body.reason, body.reason_code))


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    event_id: UUID | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_before: int | None = Field(None, description="pass as `before` to get the next (older) page")


def _day(value: date | None) -> datetime | None:
    return None if value is None else datetime.combine(value, time(0), UTC)


class AuditFilter:
    def __init__(self, action: Annotated[str | None, Query(description="one of the audited acts")] = None,
                 subject: Annotated[str | None, Query(max_length=200, description="`<kind>:<id>`")] = None,
                 from_: Annotated[CalendarDate | None, Query(alias="from")] = None,
                 to: Annotated[CalendarDate | None, Query(description="the day after the last one wanted")] = None) -> None:
        if action is not None and action not in audit.ACTIONS:
            raise ApiError(422, "unknown_action", f"action must be one of: {', '.join(audit.ACTIONS)}")
        if from_ is not None and to is not None and to <= from_:
            raise ApiError(422, "invalid_period", "`to` must be after `from`")
        self.action, self.subject, self.since, self.until = action, subject, _day(from_), _day(to)


@router.get("/audit", response_model=AuditPage, responses=responses(401, 403, 422))
def audit_log(services: ServicesDep, principal: Admin, shown: Annotated[AuditFilter, Depends()],
              before: Annotated[int | None, Query(ge=1)] = None,
              limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100) -> AuditPage:
    """Every administrative act, newest first: admins only."""
    found = audit.rows(services, principal, action=shown.action, subject=shown.subject, since=shown.since,
                       until=shown.until, before=before, limit=limit + 1)
    more, found = len(found) > limit, found[:limit]
    return AuditPage(items=[AuditEntry(id=row.id, at=row.at, actor=row.actor, action=row.action, subject=row.subject,
                                       event_id=row.event_id, detail=row.detail) for row in found],
                     next_before=found[-1].id if more else None)


@router.get("/audit.csv", responses={**responses(401, 403, 422), 200: {"content": {"text/csv": {}}}})
def audit_csv(services: ServicesDep, principal: Admin, shown: Annotated[AuditFilter, Depends()]) -> Response:
    """The same rows as a CSV file, every one that matches."""
    found = audit.rows(services, principal, action=shown.action, subject=shown.subject, since=shown.since,
                       until=shown.until, limit=None)
    return Response(audit.as_csv(found), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="timecredits-audit.csv"'})
