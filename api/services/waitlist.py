"""Waiting lists of full opportunities, for the API and the web app alike (docs/design.md §5.8, §8.2): a volunteer
joins and leaves for themself only, and joins only an opportunity with no place left for them."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from api.services.bookings import open_bookings
from ledger.pg import schema, waitlist
from ledger.pg.registry import places_taken
from ledger.pg.waitlist import Waiting


def _own(principal: Principal, volunteer_id: str | None) -> str:
    if principal.role is not Role.VOLUNTEER or principal.volunteer_id is None:
        raise forbid("a volunteer joins or leaves a waiting list for themself only")
    if volunteer_id not in (None, principal.volunteer_id):
        raise forbid("a volunteer joins or leaves a waiting list for themself only")
    return principal.volunteer_id


def _place(services: Services, opportunity_id: str, volunteer_id: str) -> Waiting | None:
    with services.engine.connect() as conn:
        found = waitlist.places_of(conn, volunteer_id, [opportunity_id])
    return found[0] if found else None


def join(services: Services, principal: Principal, opportunity_id: str,
         volunteer_id: str | None = None) -> tuple[Waiting, bool]:
    """The volunteer's place on the list, and whether they were added now (False: on it already)."""
    who = _own(principal, volunteer_id)
    op = schema.opportunities
    now = datetime.now(UTC)
    with services.engine.begin() as conn:
        found = conn.execute(select(op.c.title, op.c.capacity).where(op.c.id == opportunity_id)).first()
        if found is None:
            raise ApiError(404, "unknown_opportunity", f"no opportunity {opportunity_id}")
        if waitlist.places_of(conn, who, [opportunity_id]):
            added = False
        else:
            if found.capacity is None:
                raise ApiError(422, "no_capacity", f"{found.title} has no limit on places: book it instead")
            if any(b.opportunity_id == opportunity_id for b in open_bookings(services, who)):
                raise ApiError(409, "already_booked", f"you have booked {found.title} already")
            if places_taken(conn, opportunity_id, who, now) < found.capacity:
                raise ApiError(409, "places_left", f"{found.title} has places left: book it instead")
            added = waitlist.join(conn, opportunity_id, who, now)
    place = _place(services, opportunity_id, who)
    assert place is not None
    return place, added


def leave(services: Services, principal: Principal, opportunity_id: str) -> None:
    who = _own(principal, None)
    with services.engine.begin() as conn:
        if not waitlist.leave(conn, opportunity_id, who):
            raise ApiError(404, "not_waiting", f"you are not on the waiting list of {opportunity_id}")


def place(services: Services, principal: Principal, opportunity_id: str) -> Waiting:
    who = _own(principal, None)
    found = _place(services, opportunity_id, who)
    if found is None:
        raise ApiError(404, "not_waiting", f"you are not on the waiting list of {opportunity_id}")
    return found


def places(services: Services, volunteer_id: str) -> list[Waiting]:
    """Every waiting list the volunteer is on (their own pages only)."""
    with services.engine.connect() as conn:
        return waitlist.places_of(conn, volunteer_id)
