"""Organisations, volunteers and opportunities: written to PostgreSQL at once (201) and announced on tc.admin."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert

from api.auth import Principal, Role
from api.deps import PrincipalDep, ServicesDep, forbid, require
from api.errors import ApiError, responses
from api.models import (
    AreaCode,
    CreditAmount,
    Id,
    OptionalText100,
    Request,
    Text200,
    UtcDatetime,
    credits,
    hundredths,
)
from api.publishing import publish
from api.routes.memberships import Reference, set_reference, start_membership
from api.services import opportunities
from ledger.events import OrganisationRegistered, VolunteerRegistered
from ledger.pg import schema
from ledger.volunteer_ids import new_volunteer_id

router = APIRouter(prefix="/v1", tags=["registry"])

AgeBand = Literal["under_16", "16-24", "25-34", "35-44", "45-54", "55-64", "65+", "prefer_not_to_say"]
Seb = Literal["professional", "intermediate", "lower", "other", "prefer_not_to_say"]
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


class NewVolunteer(Request):
    id: str | None = Field(None, description="refused (`volunteer_id_chosen_by_server`): the server makes every "
                                             "volunteer's id")
    org_id: Id | None = Field(None, description="the organisation the volunteer joins; defaults to the calling "
                                                "organisation")
    reference: Reference | None = Field(None, description="that organisation's own reference for the volunteer")
    display_name: Text200
    email: Annotated[str, Field(max_length=254, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$")] | None = None
    area: AreaCode
    age_band: AgeBand | None = None
    seb: Seb | None = None
    seb_detail: OptionalText100 | None = None
    first_time_volunteer: bool | None = None
    consent_stats: bool


class VolunteerCreated(BaseModel):
    id: str


class NewOpportunity(Request):
    id: Id | None = None
    partner_id: Id | None = Field(None, description="defaults to the calling partner organisation")
    title: Text200
    category: Category
    cost: CreditAmount
    capacity: Annotated[int, Field(ge=1, le=100_000)] | None = None
    area: AreaCode
    starts_at: UtcDatetime | None = None


class Opportunity(BaseModel):
    id: str
    partner_id: str
    title: str
    category: str
    cost: str
    capacity: int | None
    area: str
    starts_at: datetime | None


def _exists(conn: Connection, table, id_: str) -> bool:  # type: ignore[no-untyped-def]
    return conn.execute(select(table.c.id).where(table.c.id == id_)).first() is not None


@router.post("/organisations", status_code=201, response_model=Organisation,
             responses=responses(400, 401, 403, 409, 422, 503))
def create_organisation(body: NewOrganisation, services: ServicesDep,
                        principal: Annotated[Principal, Depends(require(Role.ADMIN))]) -> Organisation:
    kinds = sorted(set(body.kinds))
    with services.engine.begin() as conn:
        if _exists(conn, schema.organisations, body.id):
            raise ApiError(409, "organisation_exists", f"an organisation {body.id} is already registered")
        conn.execute(insert(schema.organisations).values(id=body.id, name=body.name, area=body.area, kinds=kinds,
                                                         auto_approve=body.auto_approve))
        publish(services, principal, OrganisationRegistered(org_id=body.id, name=body.name, area=body.area,
                                                            kinds=frozenset(kinds), auto_approve=body.auto_approve), conn)
    return Organisation(id=body.id, name=body.name, area=body.area, kinds=kinds, auto_approve=body.auto_approve)


@router.get("/organisations", response_model=list[Organisation], responses=responses(401))
def list_organisations(services: ServicesDep, _: PrincipalDep) -> list[Organisation]:
    o = schema.organisations
    with services.engine.connect() as conn:
        rows = conn.execute(select(o.c.id, o.c.name, o.c.area, o.c.kinds, o.c.auto_approve).order_by(o.c.id)).all()
    return [Organisation(id=r.id, name=r.name, area=r.area, kinds=list(r.kinds), auto_approve=r.auto_approve) for r in rows]


@router.post("/volunteers", status_code=201, response_model=VolunteerCreated,
             responses=responses(400, 401, 403, 409, 422, 503))
def create_volunteer(body: NewVolunteer, services: ServicesDep,
                     principal: Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]) -> VolunteerCreated:
    """Personal data (name, e-mail) stays in PostgreSQL; the event carries only the pseudonymous id the server
    made, and statistics. Registered by an organisation (or with `org_id`), the volunteer is its member
    (docs/design.md §5.4)."""
    if body.id is not None:
        raise ApiError(422, "volunteer_id_chosen_by_server",
                       "a volunteer's id is made by the server; leave out id (an organisation's own number for the "
                       "volunteer goes in reference)")
    if principal.role is Role.ORG and body.org_id not in (None, principal.org_id):
        raise forbid("an organisation registers its own members only")
    org_id = principal.org_id if principal.role is Role.ORG else body.org_id
    if body.reference is not None and org_id is None:
        raise ApiError(422, "invalid_request", "a reference belongs to an organisation: give org_id")
    volunteer_id = new_volunteer_id()
    with services.engine.begin() as conn:
        if org_id is not None and not _exists(conn, schema.organisations, org_id):
            raise ApiError(404, "unknown_organisation", f"no organisation {org_id}")
        if _exists(conn, schema.volunteers, volunteer_id):  # 48 random bits: a collision is all but impossible
            raise ApiError(409, "volunteer_exists", "a volunteer with the id made is already registered; try again")
        attributes = body.model_dump(include={"area", "age_band", "seb", "seb_detail", "first_time_volunteer",
                                              "consent_stats"})
        conn.execute(insert(schema.volunteers).values(id=volunteer_id, **attributes))
        conn.execute(insert(schema.volunteer_profiles).values(volunteer_id=volunteer_id, display_name=body.display_name,
                                                              email=body.email))
        publish(services, principal, VolunteerRegistered(volunteer_id=volunteer_id, **attributes), conn)
        if org_id is not None:
            if body.reference is not None:
                set_reference(conn, org_id, volunteer_id, body.reference)
            start_membership(conn, services, principal, org_id, volunteer_id)
    return VolunteerCreated(id=volunteer_id)


def _opportunity(row) -> Opportunity:  # type: ignore[no-untyped-def]
    return Opportunity(id=row.id, partner_id=row.partner_id, title=row.title, category=row.category,
                       cost=credits(row.cost), capacity=row.capacity, area=row.area, starts_at=row.starts_at)


@router.post("/opportunities", status_code=201, response_model=Opportunity,
             responses=responses(400, 401, 403, 404, 409, 422, 503))
def create_opportunity(body: NewOpportunity, services: ServicesDep,
                       principal: Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]) -> Opportunity:
    listing = opportunities.Listing(title=body.title, category=body.category, cost=hundredths(body.cost),
                                    capacity=body.capacity, area=body.area, starts_at=body.starts_at)
    return _opportunity(opportunities.create(services, principal, listing, partner_id=body.partner_id,
                                             opportunity_id=body.id))


class OpportunityChanges(Request):
    title: Text200 | None = None
    capacity: Annotated[int, Field(ge=1, le=100_000)] | None = Field(None, description="null: no limit")
    starts_at: UtcDatetime | None = Field(None, description="null: no date")


@router.patch("/opportunities/{opportunity_id}", response_model=Opportunity,
              responses=responses(400, 401, 403, 404, 422, 503))
def edit_opportunity(opportunity_id: Id, body: OpportunityChanges, services: ServicesDep,
                     principal: Annotated[Principal, Depends(require(Role.ADMIN, Role.ORG))]) -> Opportunity:
    """Change the title, capacity or start of an opportunity: its partner, or an admin. Listed again as
    `OpportunityListed` with the same id (docs/design.md §4.2); a field left out keeps its value."""
    changes = body.model_dump(exclude_unset=True)
    if changes.get("title", "") is None:
        raise ApiError(422, "invalid_request", "an opportunity keeps a title")
    return _opportunity(opportunities.edit(services, principal, opportunity_id, changes))


@router.get("/opportunities", response_model=list[Opportunity], responses=responses(401, 422))
def list_opportunities(
    services: ServicesDep,
    _: PrincipalDep,
    category: Category | None = None,
    area: AreaCode | None = None,
    partner_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Opportunity]:
    op = schema.opportunities
    query = select(op).order_by(op.c.starts_at.nulls_last(), op.c.id).limit(limit)
    for column, value in ((op.c.category, category), (op.c.area, area), (op.c.partner_id, partner_id)):
        if value is not None:
            query = query.where(column == value)
    with services.engine.connect() as conn:
        return [_opportunity(row) for row in conn.execute(query)]
