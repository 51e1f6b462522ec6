"""Writes that touch credits: each becomes one event on tc.activity and is answered 202 with its event id.

What can be judged at once (role, scope, a malformed body, and the registry through the very intake rules the
worker applies, `ledger.intake.check_payload`) is refused at once; what depends on the ledger (a balance) is
decided by the worker and told by `GET /v1/events/{id}`.
"""
from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import Field

from api.auth import Principal, Role
from api.deps import ServicesDep, forbid, require
from api.errors import ApiError, responses
from api.models import (
    Accepted,
    CreditAmount,
    Id,
    IsoDate,
    OptionalText500,
    Request,
    Text200,
    hundredths,
)
from api.services import bookings, hours, spending
from ledger.events import ActivityCategory

router = APIRouter(prefix="/v1", tags=["activity"])
WRITE_ERRORS = responses(400, 401, 403, 404, 409, 410, 422, 503)

OrgOrAdmin = Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]
VolunteerOrgOrAdmin = Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG, Role.VOLUNTEER))]


class LogHours(Request):
    volunteer_id: Id
    org_id: Id
    date: IsoDate
    minutes: Annotated[int, Field(strict=True, ge=1, le=1440)]
    activity: Text200
    category: ActivityCategory = Field("other", description="the kind of activity, for the statistics")


class Decision(Request):
    reason: OptionalText500 = ""


SpendCodeText = Annotated[str, Field(min_length=1, max_length=20, examples=["1234 5678"],
                                     description="the volunteer's spend code, as they read it out or as scanned")]


class Book(Request):
    opportunity_id: Id
    volunteer_id: Id | None = Field(None, description="optional when a spend code names the volunteer")
    spend_code: SpendCodeText | None = Field(None, description="required when a partner or an admin books for a "
                                                               "volunteer: the volunteer's spend code")


class Redeem(Request):
    volunteer_id: Id | None = Field(None, description="defaults to the calling volunteer, or to the spend code's")
    partner_id: Id | None = Field(None, description="defaults to the calling partner organisation")
    amount: CreditAmount
    opportunity_id: Id | None = None
    spend_code: SpendCodeText | None = Field(None, description="required when anyone but the volunteer takes the "
                                                               "credits: the volunteer's spend code")


class Gift(Request):
    to_volunteer_id: Id
    amount: CreditAmount


def _positive(amount: str) -> int:
    value = hundredths(amount)
    if value <= 0:
        raise ApiError(422, "invalid_amount", "the amount must be more than zero")
    return value


@router.post("/hours", status_code=202, response_model=Accepted, responses=WRITE_ERRORS)
def log_hours(body: LogHours, services: ServicesDep, principal: OrgOrAdmin) -> Accepted:
    """Hours earn nothing until approved, unless the organisation approves automatically."""
    return Accepted(event_id=hours.log(services, principal, body.volunteer_id, body.org_id, body.date, body.minutes,
                                       body.activity, body.category))


def _decide(event_id: UUID, services: ServicesDep, principal: Principal, approve: bool, reason: str) -> Accepted:
    return Accepted(event_id=hours.decide(services, principal, event_id, approve, reason))


@router.post("/hours/{event_id}/approve", status_code=202, response_model=Accepted, responses=WRITE_ERRORS)
def approve_hours(event_id: UUID, services: ServicesDep, principal: OrgOrAdmin) -> Accepted:
    return _decide(event_id, services, principal, True, "")


@router.post("/hours/{event_id}/reject", status_code=202, response_model=Accepted, responses=WRITE_ERRORS)
def reject_hours(event_id: UUID, services: ServicesDep, principal: OrgOrAdmin, body: Decision | None = None) -> Accepted:
    return _decide(event_id, services, principal, False, body.reason if body else "")


@router.post("/bookings", status_code=202, response_model=Accepted, responses=WRITE_ERRORS)
def book(body: Book, services: ServicesDep, principal: VolunteerOrgOrAdmin) -> Accepted:
    """Hold the opportunity's cost from the volunteer's credits until it is attended or cancelled: by the volunteer,
    or by the partner (or an admin) with the volunteer's spend code."""
    return Accepted(event_id=spending.book(services, principal, body.opportunity_id, volunteer_id=body.volunteer_id,
                                           spend_code=body.spend_code))


@router.post("/bookings/{event_id}/cancel", status_code=202, response_model=Accepted, responses=WRITE_ERRORS)
def cancel_booking(event_id: UUID, services: ServicesDep, principal: VolunteerOrgOrAdmin) -> Accepted:
    """The volunteer or the partner cancels; the held credits return to the volunteer."""
    return Accepted(event_id=bookings.cancel(services, principal, event_id))


@router.post("/bookings/{event_id}/attend", status_code=202, response_model=Accepted, responses=WRITE_ERRORS)
def attend_booking(event_id: UUID, services: ServicesDep, principal: OrgOrAdmin) -> Accepted:
    """The partner confirms attendance; the held credits settle to the partner."""
    return Accepted(event_id=bookings.attend(services, principal, event_id))


@router.post("/bookings/{event_id}/no-show", status_code=202, response_model=Accepted, responses=WRITE_ERRORS)
def no_show(event_id: UUID, services: ServicesDep, principal: OrgOrAdmin) -> Accepted:
    """The partner says the volunteer did not come; the held credits go back to the volunteer, or to the partner
    when the programme's `TIMECREDITS_NO_SHOW_COST` is `full`. A booking settled already: 409 `booking_closed`."""
    return Accepted(event_id=bookings.no_show(services, principal, event_id))


@router.post("/redemptions", status_code=202, response_model=Accepted, responses=WRITE_ERRORS)
def redeem(body: Redeem, services: ServicesDep, principal: VolunteerOrgOrAdmin) -> Accepted:
    """Spend credits directly with a partner: by the volunteer, or by the partner with the volunteer's spend code."""
    partner_id = body.partner_id
    if principal.role is Role.ORG:
        if partner_id not in (None, principal.org_id):
            raise forbid("an organisation takes credits for itself only")
        partner_id = principal.org_id
    if partner_id is None:
        raise ApiError(422, "invalid_request", "partner_id is required")
    amount = _positive(body.amount)
    return Accepted(event_id=spending.redeem(services, principal, partner_id, amount, volunteer_id=body.volunteer_id,
                                             spend_code=body.spend_code, opportunity_id=body.opportunity_id))


@router.post("/gifts", status_code=202, response_model=Accepted, responses=WRITE_ERRORS)
def gift(body: Gift, services: ServicesDep,
         principal: Annotated[Principal, Depends(require(Role.VOLUNTEER))]) -> Accepted:
    """A volunteer gives credits to another; sent from the volunteer whose token makes the request."""
    if body.to_volunteer_id == principal.volunteer_id:
        raise ApiError(422, "self_gift", "a volunteer cannot gift credits to themselves")
    return Accepted(event_id=spending.gift(services, principal, body.to_volunteer_id, _positive(body.amount)))
