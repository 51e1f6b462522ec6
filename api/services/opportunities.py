"""A partner's opportunities, for the API and the web app alike (docs/design.md §5, §8.2): listed at once in
PostgreSQL and announced as `OpportunityListed`; an edit is the same event again with the same id, which the
worker's registry writes as an upsert (`ledger/pg/registry.py`). A series is listed as its sessions, each an
opportunity of its own with the series' id (docs/design.md §5.13)."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.dialects.postgresql import insert

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from api.intake import refuse_what_the_worker_would
from api.publishing import publish
from ledger.events import OpportunityListed
from ledger.pg import schema
from ledger.series import Repeat, SeriesRefused, check_series_id, series_events, session_id

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


def _event(opportunity_id: str, partner_id: str, listing: Listing,
           series_id: str | None = None) -> OpportunityListed:
    try:
        return OpportunityListed(opportunity_id=opportunity_id, partner_id=partner_id, title=listing.title,
                                 category=listing.category, cost=listing.cost, capacity=listing.capacity,
                                 area=listing.area, starts_at=listing.starts_at, series_id=series_id)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc


def _row(conn: Connection, opportunity_id: str) -> Row[Any] | None:
    op = schema.opportunities
    return conn.execute(select(op).where(op.c.id == opportunity_id)).first()


def _lister(principal: Principal, partner_id: str | None, listing: Listing) -> str:
    """The partner a listing is for (an organisation's own by default), once the caller may list for it."""
    partner_id = partner_id or principal.org_id
    if principal.role is Role.ORG and partner_id != principal.org_id:
        raise forbid("an organisation lists opportunities for itself only")
    if partner_id is None:
        raise ApiError(422, "invalid_request", "partner_id is required")
    if listing.cost <= 0:
        raise ApiError(422, "invalid_amount", "the cost must be more than zero")
    return partner_id


def _insert(conn: Connection, event: OpportunityListed) -> None:
    conn.execute(insert(schema.opportunities).values(
        id=event.opportunity_id, partner_id=event.partner_id, title=event.title, category=event.category,
        cost=event.cost, capacity=event.capacity, area=event.area, starts_at=event.starts_at,
        series_id=event.series_id))


def create(services: Services, principal: Principal, listing: Listing, *, partner_id: str | None = None,
           opportunity_id: str | None = None) -> Row[Any]:
    """List a new opportunity of `partner_id` (an organisation's own by default); the stored row."""
    partner_id = _lister(principal, partner_id, listing)
    opportunity_id = opportunity_id or f"opp-{secrets.token_hex(6)}"
    event = _event(opportunity_id, partner_id, listing)
    with services.engine.begin() as conn:
        refuse_what_the_worker_would(conn, principal, event, services.policy)
        if _row(conn, opportunity_id) is not None:
            raise ApiError(409, "opportunity_exists", f"an opportunity {opportunity_id} already exists")
        _insert(conn, event)
        publish(services, principal, event, conn)
        row = _row(conn, opportunity_id)
    assert row is not None
    return row


def create_series(services: Services, principal: Principal, listing: Listing, repeat: Repeat, *,
                  partner_id: str | None = None, series_id: str | None = None,
                  now: datetime | None = None) -> list[Row[Any]]:
    """List a series (docs/design.md §5.13): one opportunity a session, each with the series' partner, title,
    kind, cost, places and area, and a start of its own; written in one transaction, the stored rows in order.

    `listing.starts_at` is the first session's start; `now` (the clock, a parameter for tests) bounds it."""
    partner_id = _lister(principal, partner_id, listing)
    series_id = series_id or f"ser-{secrets.token_hex(6)}"
    try:
        check_series_id(series_id)
        events = series_events(series_id, _event(session_id(series_id, 1), partner_id, listing, series_id), repeat,
                               now or datetime.now(UTC))
    except SeriesRefused as refused:
        raise ApiError(422, refused.code, str(refused)) from refused
    op = schema.opportunities
    with services.engine.begin() as conn:
        refuse_what_the_worker_would(conn, principal, events[0], services.policy)
        taken = conn.execute(select(op.c.id).where(
            (op.c.series_id == series_id) | op.c.id.in_([e.opportunity_id for e in events]))).first()
        if taken is not None:
            raise ApiError(409, "opportunity_exists", f"a series {series_id} or its session {taken.id} already exists")
        for event in events:
            _insert(conn, event)
            publish(services, principal, event, conn)
        return sessions(conn, series_id)


def sessions(conn: Connection, series_id: str) -> list[Row[Any]]:
    """A series' sessions, soonest first."""
    op = schema.opportunities
    return list(conn.execute(select(op).where(op.c.series_id == series_id).order_by(op.c.starts_at, op.c.id)))


def series_of(services: Services, series_id: str) -> list[Row[Any]]:
    with services.engine.connect() as conn:
        return sessions(conn, series_id)


#: What an edit may change; the rest (partner, category, cost, area) stays as listed.
EDITABLE = ("title", "capacity", "starts_at")


def _may_edit(principal: Principal, partner_id: str) -> None:
    if principal.role is Role.ORG and principal.org_id != partner_id:
        raise forbid("an organisation edits its own opportunities only")
    if principal.role not in (Role.ORG, Role.ADMIN):
        raise forbid("only its partner or an admin edits an opportunity")


def _republish(services: Services, principal: Principal, conn: Connection, row: Row[Any],
               changes: dict[str, Any]) -> None:
    """Write `row` with `changes` and publish it again as `OpportunityListed`, with its series id."""
    op = schema.opportunities
    listing = Listing(title=changes.get("title", row.title), category=row.category, cost=row.cost,
                      capacity=changes.get("capacity", row.capacity), area=row.area,
                      starts_at=changes.get("starts_at", row.starts_at))
    event = _event(row.id, row.partner_id, listing, row.series_id)
    refuse_what_the_worker_would(conn, principal, event, services.policy)
    sent = publish(services, principal, event, conn)
    # The row's version is its event's time, as the worker writes it: the worker, meeting an older listing of
    # this opportunity after this edit, leaves the edit alone (docs/design.md §5.13).
    conn.execute(update(op).where(op.c.id == row.id).values(
        title=listing.title, capacity=listing.capacity, starts_at=listing.starts_at, updated_at=sent.occurred_at))


def edit(services: Services, principal: Principal, opportunity_id: str, changes: dict[str, Any]) -> Row[Any]:
    """Publish the listing again with `changes` (title, capacity, start); its partner only, or an admin. A
    session of a series is changed alone (docs/design.md §5.13)."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ApiError(422, "invalid_request", f"an edit changes {', '.join(EDITABLE)} only")
    op = schema.opportunities
    with services.engine.begin() as conn:
        row = conn.execute(select(op).where(op.c.id == opportunity_id).with_for_update()).first()
        if row is None:
            raise ApiError(404, "unknown_opportunity", f"no opportunity {opportunity_id}")
        _may_edit(principal, row.partner_id)
        _republish(services, principal, conn, row, changes)
        edited = _row(conn, opportunity_id)
    assert edited is not None
    return edited


#: What a change of a whole series may change, in each session still to come (docs/design.md §5.13).
SERIES_EDITABLE = ("title", "capacity")


def edit_series(services: Services, principal: Principal, series_id: str, changes: dict[str, Any], *,
                now: datetime | None = None) -> tuple[list[str], list[Row[Any]]]:
    """Change the title or places of every session of a series that starts after `now`, each published again
    as its own edit; sessions already begun keep theirs. The ids changed, and every session after."""
    unknown = set(changes) - set(SERIES_EDITABLE)
    if unknown:
        raise ApiError(422, "invalid_request", f"a series changes {', '.join(SERIES_EDITABLE)} only")
    now = now or datetime.now(UTC)
    op = schema.opportunities
    with services.engine.begin() as conn:
        rows = list(conn.execute(select(op).where(op.c.series_id == series_id)
                                 .order_by(op.c.starts_at, op.c.id).with_for_update()))
        if not rows:
            raise ApiError(404, "unknown_series", f"no series {series_id}")
        _may_edit(principal, rows[0].partner_id)
        to_come = [row for row in rows if row.starts_at is not None and row.starts_at > now]
        if not to_come:
            raise ApiError(409, "series_over", f"every session of series {series_id} has begun")
        for row in to_come:
            _republish(services, principal, conn, row, changes)
        return [row.id for row in to_come], sessions(conn, series_id)


def of_partner(services: Services, partner_id: str, limit: int = 500) -> list[Row[Any]]:
    """A partner's opportunities, soonest first, those without a date last."""
    op = schema.opportunities
    with services.engine.connect() as conn:
        return list(conn.execute(select(op).where(op.c.partner_id == partner_id)
                                 .order_by(op.c.starts_at.nulls_last(), op.c.id).limit(limit)))


def one(services: Services, opportunity_id: str) -> Row[Any] | None:
    with services.engine.connect() as conn:
        return _row(conn, opportunity_id)
