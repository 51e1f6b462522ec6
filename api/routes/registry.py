"""Organisations, volunteers and opportunities: written to PostgreSQL at once (201) and announced on tc.admin."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert

from api.auth import Principal, Role
from api.deps import PrincipalDep, Services, ServicesDep, require
from api.errors import ApiError, responses
from api.models import (
    AreaCode,
    CreditAmount,
    Id,
    Request,
    Text200,
    UtcDatetime,
    credits,
    hundredths,
)
from api.publishing import publish
from api.services import opportunities, volunteers
from api.services.volunteers import NewVolunteer
from ledger.events import OrganisationRegistered
from ledger.pg import schema
from ledger.series import FEWEST_SESSIONS, MOST_SESSIONS, Repeat

router = APIRouter(prefix="/v1", tags=["registry"])

Category = Literal["course", "training", "culture", "sport", "work_experience", "other"]


class NewOrganisation(Request):
    id: Id
    name: Text200
    area: AreaCode
    kinds: Annotated[list[Literal["community", "partner"]], Field(min_length=1, max_length=2)]
    auto_approve: bool = False


class Organisation(BaseModel):
    id: str
    name: str
    area: str
    kinds: list[str]
    auto_approve: bool


class VolunteerCreated(BaseModel):
    id: str


class RepeatRequest(Request):
    """How a series repeats (docs/design.md §5.13): a count of sessions rather than an end date, so a series is
    bounded and each session's number, and so its id, is known when it is listed."""

    every: Literal["week", "fortnight"] = Field(description="how often a session follows the one before")
    sessions: Annotated[int, Field(strict=True, ge=FEWEST_SESSIONS, le=MOST_SESSIONS)] = Field(
        description="how many sessions in all, the first included")


class NewOpportunity(Request):
    id: Id | None = Field(None, description="with `repeat`, the series' id (at most 61 characters), whose sessions "
                                            "are `{id}-1`, `{id}-2`, ...")
    partner_id: Id | None = Field(None, description="defaults to the calling partner organisation")
    title: Text200
    category: Category
    cost: CreditAmount
    capacity: Annotated[int, Field(ge=1, le=100_000)] | None = None
    area: AreaCode
    starts_at: UtcDatetime | None = Field(None, description="required with `repeat`: the first session's start")
    repeat: RepeatRequest | None = Field(None, description="list a series of sessions, each an opportunity")


class Opportunity(BaseModel):
    id: str
    partner_id: str
    title: str
    category: str
    cost: str
    capacity: int | None
    area: str
    starts_at: datetime | None
    series_id: str | None = Field(description="the series of sessions this opportunity is one of; null for a one-off")


class Session(BaseModel):
    id: str
    starts_at: datetime | None


class OpportunityDetail(Opportunity):
    sessions: list[Session] = Field(description="every session of its series, this one among them, soonest first; "
                                                "empty for a one-off")


def _exists(conn: Connection, table, id_: str) -> bool:  # type: ignore[no-untyped-def]
    return conn.execute(select(table.c.id).where(table.c.id == id_)).first() is not None


@router.post("/organisations", status_code=201, response_model=Organisation,
             responses=responses(400, 401, 403, 409, 422, 503))
def create_organisation(body: NewOrganisation, services: ServicesDep,
                        principal: Annotated[Principal, Depends(require(Role.ADMIN))]) -> Organisation:
    kinds = register_organisation(services, principal, body)
    return Organisation(id=body.id, name=body.name, area=body.area, kinds=kinds, auto_approve=body.auto_approve)


def register_organisation(services: Services, principal: Principal, body: NewOrganisation) -> list[str]:
    """Written at once and announced on tc.admin (docs/design.md §2); the API and the admin's page alike."""
    kinds = sorted(set(body.kinds))
    with services.engine.begin() as conn:
        if _exists(conn, schema.organisations, body.id):
            raise ApiError(409, "organisation_exists", f"an organisation {body.id} is already registered")
        conn.execute(insert(schema.organisations).values(id=body.id, name=body.name, area=body.area, kinds=kinds,
                                                         auto_approve=body.auto_approve))
        publish(services, principal, OrganisationRegistered(org_id=body.id, name=body.name, area=body.area,
                                                            kinds=frozenset(kinds), auto_approve=body.auto_approve), conn)
    return kinds


@router.get("/organisations", response_model=list[Organisation], responses=responses(401))
def list_organisations(services: ServicesDep, _: PrincipalDep) -> list[Organisation]:
    o = schema.organisations
    with services.engine.connect() as conn:
        rows = conn.execute(select(o.c.id, o.c.name, o.c.area, o.c.kinds, o.c.auto_approve).order_by(o.c.id)).all()
    return [Organisation(id=r.id, name=r.name, area=r.area, kinds=list(r.kinds), auto_approve=r.auto_approve) for r in rows]


@router.post("/volunteers", status_code=201, response_model=VolunteerCreated,
             responses=responses(400, 401, 403, 404, 409, 422, 503))
def create_volunteer(body: NewVolunteer, services: ServicesDep,
                     principal: Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]) -> VolunteerCreated:
    """Personal data (name, e-mail, the detailed background) stays in PostgreSQL; the event carries only the
    pseudonymous id the server made, and statistics, coded, with consent only (docs/design.md §5.16); an `org_id`
    no organisation has is `404 unknown_organisation`. Registered by an organisation (or with `org_id`), the volunteer is its member
    (docs/design.md §5.4)."""
    return VolunteerCreated(id=volunteers.register(services, principal, body))


def _opportunity(row) -> Opportunity:  # type: ignore[no-untyped-def]
    return Opportunity(id=row.id, partner_id=row.partner_id, title=row.title, category=row.category,
                       cost=credits(row.cost), capacity=row.capacity, area=row.area, starts_at=row.starts_at,
                       series_id=row.series_id)


def _detail(row, sessions) -> OpportunityDetail:  # type: ignore[no-untyped-def]
    return OpportunityDetail(**_opportunity(row).model_dump(),
                             sessions=[Session(id=s.id, starts_at=s.starts_at) for s in sessions])


@router.post("/opportunities", status_code=201, response_model=OpportunityDetail,
             responses=responses(400, 401, 403, 404, 409, 422, 503))
def create_opportunity(body: NewOpportunity, services: ServicesDep,
                       principal: Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]) -> OpportunityDetail:
    """One opportunity; or, with `repeat`, a series: one opportunity a session, answered as the first with the
    ids of all (docs/design.md §5.13)."""
    listing = opportunities.Listing(title=body.title, category=body.category, cost=hundredths(body.cost),
                                    capacity=body.capacity, area=body.area, starts_at=body.starts_at)
    if body.repeat is None:
        return _detail(opportunities.create(services, principal, listing, partner_id=body.partner_id,
                                            opportunity_id=body.id), [])
    sessions = opportunities.create_series(services, principal, listing,
                                           Repeat(body.repeat.every, body.repeat.sessions),
                                           partner_id=body.partner_id, series_id=body.id)
    return _detail(sessions[0], sessions)


@router.get("/opportunities/{opportunity_id}", response_model=OpportunityDetail, responses=responses(401, 404, 422))
def get_opportunity(opportunity_id: Id, services: ServicesDep, _: PrincipalDep) -> OpportunityDetail:
    """An opportunity, and the sessions of its series when it is one (docs/design.md §5.13)."""
    row = opportunities.one(services, opportunity_id)
    if row is None:
        raise ApiError(404, "unknown_opportunity", f"no opportunity {opportunity_id}")
    return _detail(row, opportunities.series_of(services, row.series_id) if row.series_id else [])


class OpportunityChanges(Request):
    title: Text200 | None = None
    capacity: Annotated[int, Field(ge=1, le=100_000)] | None = Field(None, description="null: no limit")
    starts_at: UtcDatetime | None = Field(None, description="null: no date")


@router.patch("/opportunities/{opportunity_id}", response_model=OpportunityDetail,
              responses=responses(400, 401, 403, 404, 422, 503))
def edit_opportunity(opportunity_id: Id, body: OpportunityChanges, services: ServicesDep,
                     principal: Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]) -> OpportunityDetail:
    """Change the title, capacity or start of an opportunity: its partner, or an admin. Listed again as
    `OpportunityListed` with the same id (docs/design.md §4.2); a field left out keeps its value. A session of a
    series is changed alone (docs/design.md §5.13)."""
    changes = body.model_dump(exclude_unset=True)
    if changes.get("title", "") is None:
        raise ApiError(422, "invalid_request", "an opportunity keeps a title")
    row = opportunities.edit(services, principal, opportunity_id, changes)
    return _detail(row, opportunities.series_of(services, row.series_id) if row.series_id else [])


class SeriesChanges(Request):
    title: Text200 | None = None
    capacity: Annotated[int, Field(ge=1, le=100_000)] | None = Field(None, description="null: no limit")


class SeriesChanged(BaseModel):
    series_id: str
    changed: list[str] = Field(description="the sessions changed: those still to come")
    sessions: list[Opportunity] = Field(description="every session of the series, soonest first")


@router.patch("/series/{series_id}", response_model=SeriesChanged,
              responses=responses(400, 401, 403, 404, 409, 422, 503))
def edit_series(series_id: Id, body: SeriesChanges, services: ServicesDep,
                principal: Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]) -> SeriesChanged:
    """Change the title or capacity of every session of a series still to come: its partner, or an admin. Each
    session is listed again as its own edit; those already begun keep theirs (docs/design.md §5.13)."""
    changes = body.model_dump(exclude_unset=True)
    if changes.get("title", "") is None:
        raise ApiError(422, "invalid_request", "a series keeps a title")
    if not changes:
        raise ApiError(422, "invalid_request", "say what to change: title or capacity")
    changed, rows = opportunities.edit_series(services, principal, series_id, changes)
    return SeriesChanged(series_id=series_id, changed=changed, sessions=[_opportunity(r) for r in rows])


@router.get("/opportunities", response_model=list[Opportunity], responses=responses(401, 422))
def list_opportunities(
    services: ServicesDep,
    _: PrincipalDep,
    category: Category | None = None,
    area: AreaCode | None = None,
    partner_id: Id | None = None,
    series_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Opportunity]:
    op = schema.opportunities
    query = select(op).order_by(op.c.starts_at.nulls_last(), op.c.id).limit(limit)
    for column, value in ((op.c.category, category), (op.c.area, area), (op.c.partner_id, partner_id),
                          (op.c.series_id, series_id)):
        if value is not None:
            query = query.where(column == value)
    with services.engine.connect() as conn:
        return [_opportunity(row) for row in conn.execute(query)]
