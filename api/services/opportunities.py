"""A partner's opportunities, for the API and the web app alike (docs/design.md §5, §8.2): listed at once in
PostgreSQL and announced as `OpportunityListed`; an edit is the same event again with the same id, which the
worker's registry writes as an upsert (`ledger/pg/registry.py`)."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select, update
from sqlalchemy.dialects.postgresql import insert

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from api.intake import refuse_what_the_worker_would
from api.publishing import publish
from ledger.events import OpportunityListed
from ledger.pg import schema

#: The categories the API accepts (`api.routes.registry.Category`), with the words a page shows for each.
CATEGORIES = {"course": "Course", "training": "Training", "culture": "Culture", "sport": "Sport",
              "work_experience": "Work experience", "other": "Something else"}


@dataclass(frozen=True, slots=True)
class Listing:
    """What a partner lists: the cost in hundredths."""

    title: str
    category: str
    cost: int
    capacity: int | None
    area: str
    starts_at: datetime | None


def _event(opportunity_id: str, partner_id: str, listing: Listing) -> OpportunityListed:
    try:
        return OpportunityListed(opportunity_id=opportunity_id, partner_id=partner_id, title=listing.title,
                                 category=listing.category, cost=listing.cost, capacity=listing.capacity,
                                 area=listing.area, starts_at=listing.starts_at)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc


def _row(conn: Connection, opportunity_id: str) -> Row[Any] | None:
    op = schema.opportunities
    return conn.execute(select(op).where(op.c.id == opportunity_id)).first()


def create(services: Services, principal: Principal, listing: Listing, *, partner_id: str | None = None,
           opportunity_id: str | None = None) -> Row[Any]:
    """List a new opportunity of `partner_id` (an organisation's own by default); the stored row."""
    partner_id = partner_id or principal.org_id
    if principal.role is Role.ORG and partner_id != principal.org_id:
        raise forbid("an organisation lists opportunities for itself only")
    if partner_id is None:
        raise ApiError(422, "invalid_request", "partner_id is required")
    if listing.cost <= 0:
        raise ApiError(422, "invalid_amount", "the cost must be more than zero")
    opportunity_id = opportunity_id or f"opp-{secrets.token_hex(6)}"
    event = _event(opportunity_id, partner_id, listing)
    with services.engine.begin() as conn:
        refuse_what_the_worker_would(conn, principal, event, services.policy)
        if _row(conn, opportunity_id) is not None:
            raise ApiError(409, "opportunity_exists", f"an opportunity {opportunity_id} already exists")
        conn.execute(insert(schema.opportunities).values(
            id=opportunity_id, partner_id=partner_id, title=listing.title, category=listing.category,
            cost=listing.cost, capacity=listing.capacity, area=listing.area, starts_at=listing.starts_at))
        publish(services, principal, event, conn)
        row = _row(conn, opportunity_id)
    assert row is not None
    return row


#: What an edit may change; the rest (partner, category, cost, area) stays as listed.
EDITABLE = ("title", "capacity", "starts_at")


def edit(services: Services, principal: Principal, opportunity_id: str, changes: dict[str, Any]) -> Row[Any]:
    """Publish the listing again with `changes` (title, capacity, start); its partner only, or an admin."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ApiError(422, "invalid_request", f"an edit changes {', '.join(EDITABLE)} only")
    op = schema.opportunities
    with services.engine.begin() as conn:
        row = conn.execute(select(op).where(op.c.id == opportunity_id).with_for_update()).first()
        if row is None:
            raise ApiError(404, "unknown_opportunity", f"no opportunity {opportunity_id}")
        if principal.role is Role.ORG and principal.org_id != row.partner_id:
            raise forbid("an organisation edits its own opportunities only")
        if principal.role not in (Role.ORG, Role.ADMIN):
            raise forbid("only its partner or an admin edits an opportunity")
        listing = Listing(title=changes.get("title", row.title), category=row.category, cost=row.cost,
                          capacity=changes.get("capacity", row.capacity), area=row.area,
                          starts_at=changes.get("starts_at", row.starts_at))
        event = _event(opportunity_id, row.partner_id, listing)
        refuse_what_the_worker_would(conn, principal, event, services.policy)
        conn.execute(update(op).where(op.c.id == opportunity_id).values(
            title=listing.title, capacity=listing.capacity, starts_at=listing.starts_at, updated_at=func.now()))
        publish(services, principal, event, conn)
        edited = _row(conn, opportunity_id)
    assert edited is not None
    return edited


def of_partner(services: Services, partner_id: str, limit: int = 500) -> list[Row[Any]]:
    """A partner's opportunities, soonest first, those without a date last."""
    op = schema.opportunities
    with services.engine.connect() as conn:
        return list(conn.execute(select(op).where(op.c.partner_id == partner_id)
                                 .order_by(op.c.starts_at.nulls_last(), op.c.id).limit(limit)))


def one(services: Services, opportunity_id: str) -> Row[Any] | None:
    with services.engine.connect() as conn:
        return _row(conn, opportunity_id)
