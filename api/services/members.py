"""An organisation's members and its own references for them, for the API and the web app alike (docs/design.md
§5.4, §8.2)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, StringConstraints
from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from api.publishing import publish
from api.services import audit
from ledger.events import MembershipStarted
from ledger.pg import schema

Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                             pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/#-]*$")]
"""An organisation's own reference for a volunteer, e.g. the number on its spreadsheet."""


class Member(BaseModel):
    org_id: str
    volunteer_id: str
    status: Literal["member", "pending", "ended"]
    reference: str | None
    since: datetime
    ended_at: datetime | None = None


def known_organisation(conn: Connection, org_id: str) -> None:
    o = schema.organisations
    if conn.execute(select(o.c.id).where(o.c.id == org_id)).first() is None:
        raise ApiError(404, "unknown_organisation", f"no organisation {org_id}")


def own_org(principal: Principal, org_id: str) -> None:
    if principal.role is Role.ORG and principal.org_id != org_id:
        raise forbid("an organisation manages its own members only")


def reference_of(conn: Connection, org_id: str, volunteer_id: str) -> str | None:
    r = schema.volunteer_references
    return conn.execute(select(r.c.reference).where(r.c.org_id == org_id, r.c.volunteer_id == volunteer_id)).scalar()


def set_reference(conn: Connection, org_id: str, volunteer_id: str, reference: str | None) -> None:
    """Give, change or (with None) erase an organisation's reference for a volunteer; 409 if another volunteer of
    the organisation has it."""
    r = schema.volunteer_references
    holder = conn.execute(select(r.c.volunteer_id).where(r.c.org_id == org_id, r.c.reference == reference)).scalar()
    if reference is not None and holder not in (None, volunteer_id):
        raise ApiError(409, "reference_taken", f"{org_id} already uses the reference {reference!r} for another volunteer")
    conn.execute(delete(r).where(r.c.org_id == org_id, r.c.volunteer_id == volunteer_id))
    if reference is not None:
        conn.execute(insert(r).values(org_id=org_id, reference=reference, volunteer_id=volunteer_id))


def start_membership(conn: Connection, services: Services, principal: Principal, org_id: str,
                     volunteer_id: str) -> datetime | None:
    """Make the volunteer a current member, announced on tc.admin; None if they were one already."""
    started_at = datetime.now(UTC)
    membership_id = uuid.uuid4()
    m = schema.memberships
    inserted = conn.execute(insert(m).values(id=membership_id, org_id=org_id, volunteer_id=volunteer_id,
                                             started_at=started_at).on_conflict_do_nothing().returning(m.c.id)).first()
    if inserted is None:
        return None
    conn.execute(delete(schema.membership_requests).where(schema.membership_requests.c.org_id == org_id,
                                                          schema.membership_requests.c.volunteer_id == volunteer_id))
    sent = publish(services, principal, MembershipStarted(membership_id=membership_id, org_id=org_id,
                                                          volunteer_id=volunteer_id), conn)
    audit.record(conn, principal, "membership_started", f"volunteer:{volunteer_id}", event_id=sent.event_id,
                 org_id=org_id)
    return started_at


def of_organisation(services: Services, principal: Principal, org_id: str) -> list[Member]:
    """The organisation's current members and pending requests, with its references (that organisation, admin)."""
    own_org(principal, org_id)
    m, requests, r = schema.memberships, schema.membership_requests, schema.volunteer_references
    with services.engine.connect() as conn:
        known_organisation(conn, org_id)
        references = dict(conn.execute(select(r.c.volunteer_id, r.c.reference).where(r.c.org_id == org_id)).all())
        current = conn.execute(select(m.c.volunteer_id, m.c.started_at)
                               .where(m.c.org_id == org_id, m.c.ended_at.is_(None))).all()
        pending = conn.execute(select(requests.c.volunteer_id, requests.c.requested_at)
                               .where(requests.c.org_id == org_id)).all()
    members = [Member(org_id=org_id, volunteer_id=v, status="member", reference=references.get(v), since=since)
               for v, since in current]
    members += [Member(org_id=org_id, volunteer_id=v, status="pending", reference=references.get(v), since=since)
                for v, since in pending]
    return sorted(members, key=lambda member: (member.status, member.volunteer_id))


def current_member(services: Services, principal: Principal, org_id: str, volunteer_id: str) -> Member:
    """One current member of the organisation, or 404 `not_a_member` (the same whether or not the volunteer
    exists, so an organisation learns nothing of volunteers outside it)."""
    found = [m for m in of_organisation(services, principal, org_id)
             if m.volunteer_id == volunteer_id and m.status == "member"]
    if not found:
        raise ApiError(404, "not_a_member", f"volunteer {volunteer_id} is not a member of {org_id}")
    return found[0]
