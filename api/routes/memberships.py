"""Memberships of volunteers in organisations, and organisations' own references for them (docs/design.md §5.4).

A membership starts at once when an admin adds it or the volunteer asks with their own credential (that is their
agreement); an organisation's request stays pending until the volunteer agrees by adding themselves. Starts and
ends are written to PostgreSQL at once and announced on tc.admin (ids only), like every registry write.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel
from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects.postgresql import insert

from api.auth import Principal, Role
from api.deps import PrincipalDep, ServicesDep, forbid, require
from api.errors import ApiError, responses
from api.models import Id, Request
from api.publishing import publish
from api.services import audit, erasure, members
from api.services.members import (  # noqa: F401 - Reference, set_reference, start_membership: re-exported
    Member,
    Reference,
    known_organisation as _known_organisation,
    own_org as _own_org,
    reference_of,
    set_reference,
    start_membership,
)
from ledger.events import MembershipEnded
from ledger.pg import schema
from ledger.pg.registry import is_current_member

router = APIRouter(prefix="/v1", tags=["memberships"])

MemberManager = Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG, Role.VOLUNTEER))]
OrgOrAdmin = Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]


class AddMember(Request):
    volunteer_id: Id | None = None
    reference: Reference | None = None


class NewReference(Request):
    reference: Reference | None


class Membership(BaseModel):
    org_id: str
    status: Literal["member", "pending", "ended"]
    since: datetime
    ended_at: datetime | None = None


def _known_volunteer(conn: Connection, volunteer_id: str) -> None:
    v = schema.volunteers
    if conn.execute(select(v.c.id).where(v.c.id == volunteer_id)).first() is None:
        raise ApiError(404, "unknown_volunteer", f"no volunteer {volunteer_id}")


def _current_since(conn: Connection, org_id: str, volunteer_id: str) -> datetime:
    m = schema.memberships
    return conn.execute(select(m.c.started_at).where(m.c.org_id == org_id, m.c.volunteer_id == volunteer_id,
                                                     m.c.ended_at.is_(None))).scalar_one()


@router.post("/organisations/{org_id}/members", status_code=201, response_model=Member,
             responses={**responses(400, 401, 403, 404, 409, 410, 422, 503),
                        200: {"model": Member, "description": "a member already (an organisation's reference set)"},
                        202: {"model": Member, "description": "pending until the volunteer agrees"}})
def add_member(org_id: Id, body: AddMember, response: Response, services: ServicesDep,
               principal: MemberManager) -> Member:
    """An admin adds at once; a volunteer adds themselves (their agreement); an organisation's request waits for the
    volunteer's agreement, given by the volunteer adding themselves (docs/design.md §5.4)."""
    _own_org(principal, org_id)
    if principal.role is Role.VOLUNTEER:
        if body.volunteer_id not in (None, principal.volunteer_id):
            raise forbid("a volunteer adds themselves only")
        if body.reference is not None:
            raise forbid("an organisation's reference for a volunteer is given by that organisation")
        volunteer_id = principal.volunteer_id
    else:
        volunteer_id = body.volunteer_id
    if volunteer_id is None:
        raise ApiError(422, "invalid_request", "volunteer_id is required")
    requests = schema.membership_requests
    with services.engine.begin() as conn:
        _known_organisation(conn, org_id)
        _known_volunteer(conn, volunteer_id)
        erasure.refuse_if_erased(conn, volunteer_id)  # neither a member nor asked to be one (§5.15)
        member = is_current_member(conn, org_id, volunteer_id)
        if principal.role is Role.ORG and not member:
            if body.reference is not None:
                set_reference(conn, org_id, volunteer_id, body.reference)
            requested = insert(requests).values(org_id=org_id, volunteer_id=volunteer_id,
                                                requested_at=datetime.now(UTC))
            row = conn.execute(requested.on_conflict_do_update(
                index_elements=["org_id", "volunteer_id"], set_={"requested_at": requested.excluded.requested_at}
            ).returning(requests.c.requested_at)).one()
            response.status_code = 202
            return Member(org_id=org_id, volunteer_id=volunteer_id, status="pending",
                          reference=reference_of(conn, org_id, volunteer_id), since=row.requested_at)
        if body.reference is not None:
            set_reference(conn, org_id, volunteer_id, body.reference)
        if member:
            response.status_code = 200
            since = _current_since(conn, org_id, volunteer_id)
        else:
            started = start_membership(conn, services, principal, org_id, volunteer_id)
            since = started if started is not None else _current_since(conn, org_id, volunteer_id)
        return Member(org_id=org_id, volunteer_id=volunteer_id, status="member",
                      reference=reference_of(conn, org_id, volunteer_id), since=since)


@router.delete("/organisations/{org_id}/members/{volunteer_id}", response_model=Member,
               responses=responses(401, 403, 404, 422, 503))
def end_membership(org_id: Id, volunteer_id: Id, services: ServicesDep, principal: MemberManager) -> Member:
    """Ends a membership (or withdraws a pending request): an admin, the organisation, or the volunteer. The spell
    stays in the history; the volunteer can rejoin."""
    _own_org(principal, org_id)
    if principal.role is Role.VOLUNTEER and principal.volunteer_id != volunteer_id:
        raise forbid("a volunteer ends their own memberships only")
    m, requests = schema.memberships, schema.membership_requests
    with services.engine.begin() as conn:
        withdrawn = conn.execute(delete(requests).where(requests.c.org_id == org_id,
                                                        requests.c.volunteer_id == volunteer_id)
                                 .returning(requests.c.requested_at)).first()
        now = datetime.now(UTC)
        ended = conn.execute(update(m).where(m.c.org_id == org_id, m.c.volunteer_id == volunteer_id,
                                             m.c.ended_at.is_(None))
                             .values(ended_at=now, updated_at=now).returning(m.c.id, m.c.started_at)).first()
        if ended is None:
            if withdrawn is None:
                raise ApiError(404, "not_a_member", f"volunteer {volunteer_id} is not a member of {org_id}")
            return Member(org_id=org_id, volunteer_id=volunteer_id, status="ended",
                          reference=reference_of(conn, org_id, volunteer_id), since=withdrawn.requested_at, ended_at=now)
        sent = publish(services, principal,
                       MembershipEnded(membership_id=ended.id, org_id=org_id, volunteer_id=volunteer_id), conn)
        audit.record(conn, principal, "membership_ended", f"volunteer:{volunteer_id}", event_id=sent.event_id,
                     org_id=org_id)
        return Member(org_id=org_id, volunteer_id=volunteer_id, status="ended",
                      reference=reference_of(conn, org_id, volunteer_id), since=ended.started_at, ended_at=now)


@router.put("/organisations/{org_id}/members/{volunteer_id}/reference", response_model=Member,
            responses=responses(400, 401, 403, 404, 409, 422))
def change_reference(org_id: Id, volunteer_id: Id, body: NewReference, services: ServicesDep,
                     principal: OrgOrAdmin) -> Member:
    """The organisation's own reference for one of its members: given, changed, or erased with `null`."""
    _own_org(principal, org_id)
    with services.engine.begin() as conn:
        if not is_current_member(conn, org_id, volunteer_id):
            raise ApiError(404, "not_a_member", f"volunteer {volunteer_id} is not a member of {org_id}")
        set_reference(conn, org_id, volunteer_id, body.reference)
        return Member(org_id=org_id, volunteer_id=volunteer_id, status="member", reference=body.reference,
                      since=_current_since(conn, org_id, volunteer_id))


@router.get("/organisations/{org_id}/members", response_model=list[Member], responses=responses(401, 403, 404, 422))
def list_members(org_id: Id, services: ServicesDep, principal: OrgOrAdmin) -> list[Member]:
    """The organisation's current members and pending requests, with its references (that organisation, admin)."""
    return members.of_organisation(services, principal, org_id)


@router.get("/volunteers/{volunteer_id}/memberships", response_model=list[Membership],
            responses=responses(401, 403, 404, 422))
def memberships_of(volunteer_id: Id, services: ServicesDep, principal: PrincipalDep) -> list[Membership]:
    """A volunteer's memberships, past ones too, and the organisations' requests awaiting their agreement (that
    volunteer, admin)."""
    if not (principal.role is Role.ADMIN or principal.volunteer_id == volunteer_id):
        raise forbid("a volunteer sees their own memberships only")
    m, requests = schema.memberships, schema.membership_requests
    with services.engine.connect() as conn:
        _known_volunteer(conn, volunteer_id)
        spells = conn.execute(select(m.c.org_id, m.c.started_at, m.c.ended_at).where(m.c.volunteer_id == volunteer_id)
                              .order_by(m.c.started_at, m.c.org_id)).all()
        pending = conn.execute(select(requests.c.org_id, requests.c.requested_at)
                               .where(requests.c.volunteer_id == volunteer_id).order_by(requests.c.org_id)).all()
    found = [Membership(org_id=org, status="member" if ended is None else "ended", since=since, ended_at=ended)
             for org, since, ended in spells]
    return found + [Membership(org_id=org, status="pending", since=since) for org, since in pending]
