"""Registering a volunteer, for the API and the web app alike (docs/design.md §5.4, §8.2): one model checks what
either door was given, one function writes it."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from api.models import AreaCode, Id, Request, Text200
from api.publishing import publish
from api.services.consent import add_to_history
from api.services.members import Reference, set_reference, start_membership
from ledger.events import SebOccupation, VolunteerRegistered
from ledger.pg import schema
from ledger.volunteer_ids import new_volunteer_id

AgeBand = Literal["under_16", "16-24", "25-34", "35-44", "45-54", "55-64", "65+", "prefer_not_to_say"]
Seb = Literal["professional", "intermediate", "lower", "other", "prefer_not_to_say"]


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
    seb_detail: SebOccupation | None = Field(
        None, description="the main household earner's job when the volunteer was about 14, as a code from the "
                          "Social Mobility Commission's list; kept in PostgreSQL only, never on Kafka. Words are "
                          "refused (`invalid_request`)")
    first_time_volunteer: bool | None = None
    consent_stats: bool


def _exists(conn: Connection, table, id_: str) -> bool:  # type: ignore[no-untyped-def]
    return conn.execute(select(table.c.id).where(table.c.id == id_)).first() is not None


def register(services: Services, principal: Principal, body: NewVolunteer, conn: Connection | None = None) -> str:
    """The new volunteer's id. Personal data (name, e-mail) stays in PostgreSQL; the event carries only the
    pseudonymous id the server made, and statistics. Registered by an organisation (or with `org_id`), the
    volunteer is its member. With `conn`, written in that transaction (the web app adds the person who signs in
    in the same one)."""
    if body.id is not None:
        raise ApiError(422, "volunteer_id_chosen_by_server",
                       "a volunteer's id is made by the server; leave out id (an organisation's own number for the "
                       "volunteer goes in reference)")
    if principal.role is Role.ORG and body.org_id not in (None, principal.org_id):
        raise forbid("an organisation registers its own members only")
    org_id = principal.org_id if principal.role is Role.ORG else body.org_id
    if body.reference is not None and org_id is None:
        raise ApiError(422, "invalid_request", "a reference belongs to an organisation: give org_id")
    if conn is None:
        with services.engine.begin() as own:
            return _write(own, services, principal, body, org_id)
    return _write(conn, services, principal, body, org_id)


def _write(conn: Connection, services: Services, principal: Principal, body: NewVolunteer, org_id: str | None) -> str:
    volunteer_id = new_volunteer_id()
    if org_id is not None and not _exists(conn, schema.organisations, org_id):
        raise ApiError(404, "unknown_organisation", f"no organisation {org_id}")
    if _exists(conn, schema.volunteers, volunteer_id):  # 48 random bits: a collision is all but impossible
        raise ApiError(409, "volunteer_exists", "a volunteer with the id made is already registered; try again")
    attributes = body.model_dump(include={"area", "age_band", "seb", "seb_detail", "first_time_volunteer",
                                          "consent_stats"})
    if not body.consent_stats:  # the answers exist only to be counted, and are kept only with consent (§5.7)
        attributes.update(age_band=None, seb=None, seb_detail=None)
    conn.execute(insert(schema.volunteers).values(id=volunteer_id, **attributes))
    attributes.pop("seb_detail")  # the detail stays here (docs/design.md §5.16)
    conn.execute(insert(schema.volunteer_profiles).values(volunteer_id=volunteer_id, display_name=body.display_name,
                                                          email=body.email))
    add_to_history(conn, principal, volunteer_id, body.consent_stats)
    publish(services, principal, VolunteerRegistered(volunteer_id=volunteer_id, **attributes), conn)
    if org_id is not None:
        if body.reference is not None:
            set_reference(conn, org_id, volunteer_id, body.reference)
        start_membership(conn, services, principal, org_id, volunteer_id)
    return volunteer_id
