"""Tokens for the four roles; shown once, stored as digests."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.auth import Principal, Role, create_token
from api.deps import ServicesDep, require
from api.errors import ApiError, responses
from api.models import Id, OptionalText500, Request
from ledger.pg import schema

router = APIRouter(prefix="/v1", tags=["tokens"])


class NewToken(Request):
    role: Role
    org_id: Id | None = None
    volunteer_id: Id | None = None
    label: OptionalText500 = ""


class TokenCreated(BaseModel):
    token: str = Field(description="shown once: store it now")
    id: str
    role: Role
    org_id: str | None = None
    volunteer_id: str | None = None


def check_scope(role: Role, org_id: str | None, volunteer_id: str | None) -> None:
    if (role is Role.ORG) != (org_id is not None) or (role is Role.VOLUNTEER) != (volunteer_id is not None):
        raise ApiError(422, "invalid_scope", "an org token names org_id only, a volunteer token volunteer_id only, "
                                             "admin and lead tokens neither")


@router.post("/tokens", status_code=201, response_model=TokenCreated, responses=responses(400, 401, 403, 404, 422))
def create(body: NewToken, services: ServicesDep,
           _: Annotated[Principal, Depends(require(Role.ADMIN))]) -> TokenCreated:
    check_scope(body.role, body.org_id, body.volunteer_id)
    with services.engine.connect() as conn:
        if body.org_id and conn.execute(select(schema.organisations.c.id).where(
                schema.organisations.c.id == body.org_id)).first() is None:
            raise ApiError(404, "unknown_organisation", f"no organisation {body.org_id}")
        if body.volunteer_id and conn.execute(select(schema.volunteers.c.id).where(
                schema.volunteers.c.id == body.volunteer_id)).first() is None:
            raise ApiError(404, "unknown_volunteer", f"no volunteer {body.volunteer_id}")
    token, token_id = create_token(services.engine, body.role, body.org_id, body.volunteer_id, body.label)
    return TokenCreated(token=token, id=str(token_id), role=body.role, org_id=body.org_id, volunteer_id=body.volunteer_id)
