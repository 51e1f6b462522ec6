"""Tokens for the four roles: created (shown once, stored as digests), listed without secrets, revoked
(docs/design.md §5.1)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field
from sqlalchemy import Engine, func, select, update
from sqlalchemy.sql import ColumnElement
from starlette.concurrency import run_in_threadpool

from api.auth import DEFAULT_LIFETIME_DAYS, MAX_LIFETIME_DAYS, Principal, Role, create_token, expiry_after
from api.deps import PrincipalDep, ServicesDep, require
from api.errors import ApiError, responses
from api.models import Id, OptionalText500, Request
from api.services import audit, erasure
from ledger.pg import schema

router = APIRouter(prefix="/v1", tags=["tokens"])
_tokens = schema.api_tokens


class NewToken(Request):
    role: Role
    org_id: Id | None = None
    volunteer_id: Id | None = None
    label: OptionalText500 = ""
    expires_in_days: int = Field(default=DEFAULT_LIFETIME_DAYS, ge=1, le=MAX_LIFETIME_DAYS,
                                 description="how many days the token works for")


class TokenCreated(BaseModel):
    token: str = Field(description="shown once: store it now")
    id: str
    role: Role
    org_id: str | None = None
    volunteer_id: str | None = None
    expires_at: datetime


class TokenListed(BaseModel):
    """A token as listed: who it is for and its dates, never the secret."""
    id: str
    role: Role
    org_id: str | None
    volunteer_id: str | None
    label: str
    created_at: datetime
    last_used_at: datetime | None = Field(description="to the minute: recorded at most once a minute")
    expires_at: datetime
    revoked_at: datetime | None


class TokenList(BaseModel):
    tokens: list[TokenListed]


def check_scope(role: Role, org_id: str | None, volunteer_id: str | None) -> None:
    if (role is Role.ORG) != (org_id is not None) or (role is Role.VOLUNTEER) != (volunteer_id is not None):
        raise ApiError(422, "invalid_scope", "an org token names org_id only, a volunteer token volunteer_id only, "
                                             "admin and lead tokens neither")


@router.post("/tokens", status_code=201, response_model=TokenCreated,
             responses=responses(400, 401, 403, 404, 410, 422))
def create(body: NewToken, services: ServicesDep,
           principal: Annotated[Principal, Depends(require(Role.ADMIN))]) -> TokenCreated:
    token, token_id, expires_at = issue_token(services.engine, body, principal)
    return TokenCreated(token=token, id=str(token_id), role=body.role, org_id=body.org_id,
                        volunteer_id=body.volunteer_id, expires_at=expires_at)


def issue_token(engine: Engine, body: NewToken, by: Principal | str) -> tuple[str, uuid.UUID, datetime]:
    """A new token for a scope that exists: (the token, shown once; its id; when it expires)."""
    check_scope(body.role, body.org_id, body.volunteer_id)
    with engine.connect() as conn:
        if body.org_id and conn.execute(select(schema.organisations.c.id).where(
                schema.organisations.c.id == body.org_id)).first() is None:
            raise ApiError(404, "unknown_organisation", f"no organisation {body.org_id}")
        if body.volunteer_id and conn.execute(select(schema.volunteers.c.id).where(
                schema.volunteers.c.id == body.volunteer_id)).first() is None:
            raise ApiError(404, "unknown_volunteer", f"no volunteer {body.volunteer_id}")
        if body.volunteer_id:
            erasure.refuse_if_erased(conn, body.volunteer_id)
    expires_at = expiry_after(body.expires_in_days)
    token, token_id = create_token(engine, body.role, body.org_id, body.volunteer_id, body.label, expires_at)
    with engine.begin() as conn:
        audit.record(conn, by, "token_issued", f"token:{token_id}", role=body.role.value, org_id=body.org_id,
                     volunteer_id=body.volunteer_id)
    return token, token_id, expires_at


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """The tokens `principal` may list and revoke: all for admin, its organisation's for an organisation, its
    own for a volunteer or a lead; the bootstrap admin token has no row and sees all."""
    if principal.role is Role.ADMIN:
        return _tokens.c.id.is_not(None)
    if principal.role is Role.ORG:
        return _tokens.c.org_id == principal.org_id
    if principal.role is Role.VOLUNTEER:
        return _tokens.c.volunteer_id == principal.volunteer_id
    return _tokens.c.id == uuid.UUID(principal.token_id) if principal.token_id else _tokens.c.id.is_(None)


def list_tokens(engine: Engine, principal: Principal) -> list[TokenListed]:
    columns = [_tokens.c.id, _tokens.c.role, _tokens.c.org_id, _tokens.c.volunteer_id, _tokens.c.label,
               _tokens.c.created_at, _tokens.c.last_used_at, _tokens.c.expires_at, _tokens.c.revoked_at]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).where(visible_to(principal)).order_by(_tokens.c.created_at,
                                                                                  _tokens.c.id)).mappings().all()
    return [TokenListed(**{**row, "id": str(row["id"])}) for row in rows]


def revoke_token(engine: Engine, principal: Principal, token_id: uuid.UUID) -> bool:
    """Revoke a token `principal` may see; False if there is none (unknown, or another's: the same answer).

    Revoking a revoked token keeps its first `revoked_at` and still succeeds.
    """
    with engine.begin() as conn:
        found = conn.execute(select(_tokens.c.revoked_at).where(_tokens.c.id == token_id,
                                                                visible_to(principal))).first()
        if found is None:
            return False
        if found.revoked_at is None:
            conn.execute(update(_tokens).where(_tokens.c.id == token_id).values(revoked_at=func.now()))
            audit.record(conn, principal, "token_revoked", f"token:{token_id}")
    return True


@router.get("/tokens", response_model=TokenList, responses=responses(401))
def list_(principal: PrincipalDep, services: ServicesDep) -> TokenList:
    return TokenList(tokens=list_tokens(services.engine, principal))


@router.delete("/tokens/{token_id}", status_code=204, response_class=Response,
               responses=responses(401, 404))
async def revoke(token_id: str, principal: PrincipalDep, services: ServicesDep) -> Response:
    try:
        parsed = uuid.UUID(token_id)
    except ValueError:
        parsed = None
    if parsed is None or not await run_in_threadpool(revoke_token, services.engine, principal, parsed):
        raise ApiError(404, "unknown_token", f"no token {token_id} that you may revoke")
    return Response(status_code=204)
