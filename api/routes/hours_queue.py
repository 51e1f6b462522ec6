"""The approval queue, bulk decisions and group logs (docs/design.md §5.12): the same service functions as the
coordinator's pages (`api.services.hours`), each decision and each log still one event."""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import Principal, Role
from api.deps import ServicesDep, require
from api.errors import responses
from api.models import Id, IsoDate, OptionalText500, Request, Text200, credits
from api.services import hours
from ledger.events import ActivityCategory, CalendarDate

router = APIRouter(prefix="/v1/hours", tags=["activity"])
OrgOrAdmin = Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]
Status = Literal["pending", "approved", "rejected"]
MAX_PER_PAGE = 200


class LogItem(BaseModel):
    log_event_id: UUID
    volunteer_id: str
    org_id: str
    reference: str | None = Field(description="the organisation's own reference for the volunteer, if it gave one")
    date: date
    minutes: int
    credits: str = Field(description="what the log earns once approved, as credits")
    category: str
    status: Status
    decided_at: datetime | None
    activity: str = Field(description="the organisation's own description of the work")


class LogPageOut(BaseModel):
    items: list[LogItem]
    total: int = Field(description="how many logs the filters keep, over every page")
    page: int
    per_page: int


def log_items(found: list[hours.LoggedHours]) -> list[LogItem]:
    return [LogItem(log_event_id=h.event_id, volunteer_id=h.volunteer_id, org_id=h.org_id, reference=h.reference,
                    date=h.worked_on, minutes=h.minutes, credits=credits(h.credits), category=h.category,
                    status=h.status, decided_at=h.decided_at, activity=h.activity)  # type: ignore[arg-type]
            for h in found]


StatusQ = Annotated[str | None, Query(description="pending, approved or rejected (default: all; another is "
                                                  "422 `invalid_status`)", max_length=20)]
VolunteerQ = Annotated[Id | None, Query(description="one volunteer's logs only")]
FromQ = Annotated[CalendarDate | None, Query(alias="from", description="first day worked")]
ToQ = Annotated[CalendarDate | None, Query(alias="to", description="last day worked")]
OrgQ = Annotated[Id | None, Query(description="an admin's choice of organisation (default: all); an "
                                              "organisation's own by default")]


@router.get("", response_model=LogPageOut, responses=responses(401, 403, 422))
def list_logs(services: ServicesDep, principal: OrgOrAdmin, status: StatusQ = None, volunteer_id: VolunteerQ = None,
              start: FromQ = None, end: ToQ = None, org_id: OrgQ = None,
              page: Annotated[int, Query(ge=1, le=100_000)] = 1,
              per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = 50) -> LogPageOut:
    """An organisation's logs with their status, oldest work first, paged by `page` and `per_page` with `total`."""
    found = hours.queue(services, principal, org_id, hours.LogFilter(status, volunteer_id, start, end), page, per_page)
    return LogPageOut(items=log_items(found.items), total=found.total, page=found.page, per_page=found.per_page)


class Decisions(Request):
    log_event_ids: Annotated[list[UUID], Field(min_length=1, description=(
        f"the logs to decide, at most {hours.MAX_AT_ONCE} (more is a 422 `too_many`)"))]
    reason: OptionalText500 = Field("", description="required to reject")


class DecisionOut(BaseModel):
    log_event_id: UUID
    outcome: Literal["accepted", "refused"]
    event_id: UUID | None = Field(None, description="accepted: the decision's event, to follow with "
                                                    "GET /v1/events/{event_id}")
    code: str | None = Field(None, description="refused: why, as a code (unknown_log, forbidden, already_decided, …)")
    message: str | None = None


class DecisionsOut(BaseModel):
    accepted: int
    refused: int
    outcomes: list[DecisionOut]


_MANY = {202: {"model": DecisionsOut, "description": "at least one event produced; each outcome listed"},
         **responses(400, 401, 403, 422, 503)}


def _answer(body: BaseModel, produced: bool) -> JSONResponse:
    """202 when anything was produced (the client follows the events), 200 when nothing was."""
    return JSONResponse(body.model_dump(mode="json"), status_code=202 if produced else 200)


def _decide_many(services: ServicesDep, principal: Principal, body: Decisions, approve: bool) -> JSONResponse:
    outcomes = [DecisionOut(log_event_id=o.log_event_id, outcome="accepted" if o.event_id else "refused",
                            event_id=o.event_id, code=o.code, message=o.message)
                for o in hours.decide_many(services, principal, body.log_event_ids, approve, body.reason)]
    accepted = sum(o.outcome == "accepted" for o in outcomes)
    return _answer(DecisionsOut(accepted=accepted, refused=len(outcomes) - accepted, outcomes=outcomes),
                   accepted > 0)


@router.post("/approve", response_model=DecisionsOut, responses=_MANY)
def approve_many(body: Decisions, services: ServicesDep, principal: OrgOrAdmin) -> JSONResponse:
    """Approve many logs: one `HoursApproved` each, each refusal reported by its log."""
    return _decide_many(services, principal, body, True)


@router.post("/reject", response_model=DecisionsOut, responses=_MANY)
def reject_many(body: Decisions, services: ServicesDep, principal: OrgOrAdmin) -> JSONResponse:
    """Reject many logs, with the reason the volunteer may be told: one `HoursRejected` each."""
    return _decide_many(services, principal, body, False)


class GroupLog(Request):
    org_id: Id
    volunteer_ids: Annotated[list[Id], Field(min_length=1, description=(
        f"the volunteers who took part, at most {hours.MAX_AT_ONCE}"))]
    date: IsoDate
    minutes: Annotated[int, Field(strict=True, ge=1, le=1440)]
    activity: Text200
    category: ActivityCategory = "other"
    approve: bool = Field(False, description="approve each log once the worker applied it")


class GroupOutcomeOut(BaseModel):
    volunteer_id: str
    outcome: Literal["refused", "waiting_for_approval", "approved_automatically", "approval_sent", "not_approved",
                     "log_pending"]
    log_event_id: UUID | None
    approval_event_id: UUID | None
    code: str | None
    message: str | None


class GroupOut(BaseModel):
    outcomes: list[GroupOutcomeOut]


@router.post("/group", response_model=GroupOut, responses={
    202: {"model": GroupOut, "description": "at least one log produced; each volunteer's outcome listed"},
    **responses(400, 401, 403, 422, 503)})
def log_group(body: GroupLog, services: ServicesDep, principal: OrgOrAdmin) -> JSONResponse:
    """One activity for many volunteers: one `HoursLogged` each and, with `approve`, one `HoursApproved` each."""
    found = hours.log_group(services, principal, body.org_id, body.volunteer_ids, body.date, body.minutes,
                            body.activity, body.category, body.approve)
    outcomes = [GroupOutcomeOut(volunteer_id=o.volunteer_id, outcome=o.outcome,  # type: ignore[arg-type]
                                log_event_id=o.log_event_id, approval_event_id=o.approval_event_id, code=o.code,
                                message=o.message) for o in found]
    return _answer(GroupOut(outcomes=outcomes), any(o.log_event_id is not None for o in found))
