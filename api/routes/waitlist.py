"""Waiting lists of full opportunities (docs/design.md §5.8): a volunteer joins, reads their place and leaves, for
themself only. Offers are made by the offer job, never by a request."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from api.auth import Principal, Role
from api.deps import ServicesDep, require
from api.errors import responses
from api.models import Id, Request
from api.services import waitlist
from ledger.pg.waitlist import Waiting

router = APIRouter(prefix="/v1", tags=["waiting lists"])

VolunteerOnly = Annotated[Principal, Depends(require(Role.VOLUNTEER))]


class JoinWaitlist(Request):
    volunteer_id: Id | None = None


class WaitlistPlace(BaseModel):
    opportunity_id: str
    volunteer_id: str
    position: int
    offered_until: datetime | None


def _answer(place: Waiting) -> WaitlistPlace:
    return WaitlistPlace(opportunity_id=place.opportunity_id, volunteer_id=place.volunteer_id,
                         position=place.position, offered_until=place.offered_until)


@router.post("/opportunities/{opportunity_id}/waitlist", status_code=201, response_model=WaitlistPlace,
             responses={**responses(400, 401, 403, 404, 409, 422),
                        200: {"model": WaitlistPlace, "description": "on the list already: their place"}})
def join_waitlist(opportunity_id: Id, services: ServicesDep, principal: VolunteerOnly, response: Response,
                  body: JoinWaitlist | None = None) -> WaitlistPlace:
    """Join the waiting list of a full opportunity, last in line: the volunteer, for themself only."""
    place, added = waitlist.join(services, principal, opportunity_id, body.volunteer_id if body else None)
    if not added:
        response.status_code = 200
    return _answer(place)


@router.get("/opportunities/{opportunity_id}/waitlist", response_model=WaitlistPlace,
            responses=responses(401, 403, 404))
def waitlist_place(opportunity_id: Id, services: ServicesDep, principal: VolunteerOnly) -> WaitlistPlace:
    """The volunteer's own place on the list (1 is next), and until when a place is held for them."""
    return _answer(waitlist.place(services, principal, opportunity_id))


@router.delete("/opportunities/{opportunity_id}/waitlist", status_code=204, response_class=Response,
               responses=responses(401, 403, 404))
def leave_waitlist(opportunity_id: Id, services: ServicesDep, principal: VolunteerOnly) -> Response:
    """Leave the list (and give up a place held for them)."""
    waitlist.leave(services, principal, opportunity_id)
    return Response(status_code=204)
