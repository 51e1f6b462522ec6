"""A volunteer's balance and statement, read from PostgreSQL."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.auth import Principal, Role
from api.deps import PrincipalDep, Services, ServicesDep, forbid
from api.errors import ApiError, responses
from api.models import Balance, Id, Statement, StatementLine, credits
from ledger.pg import schema
from ledger.accounts import volunteer_account
from ledger.pg.registry import is_current_member
from ledger.pg.repository import LedgerRepository, VolunteerBalance

router = APIRouter(prefix="/v1/volunteers", tags=["balances"])


def may_read_without_lookup(principal: Principal, volunteer_id: str) -> bool:
    """An admin, or that volunteer: the readers who need no membership looked up (docs/design.md §5.4)."""
    return principal.role is Role.ADMIN or (principal.role is Role.VOLUNTEER and principal.volunteer_id == volunteer_id)


def _may_read(services: Services, principal: Principal, volunteer_id: str) -> None:
    """That volunteer, an admin, or an organisation the volunteer is a current member of (docs/design.md §5.4).

    An organisation is told `not_a_member` whether or not the volunteer exists, so it learns nothing of
    volunteers outside it; a programme lead reads statistics, never one volunteer's credits."""
    if may_read_without_lookup(principal, volunteer_id):
        return
    if principal.role is Role.VOLUNTEER:
        raise forbid("a volunteer sees their own balance and statement only")
    if principal.role is Role.LEAD:
        raise forbid("a programme lead reads statistics, not one volunteer's balance or statement")
    assert principal.org_id is not None
    with services.engine.connect() as conn:
        member = is_current_member(conn, principal.org_id, volunteer_id)
    if not member:
        raise ApiError(403, "not_a_member", f"volunteer {volunteer_id} is not a member of {principal.org_id}: "
                                            "an organisation reads its own members' credits only")


def _known(services: ServicesDep, volunteer_id: str) -> None:
    with services.engine.connect() as conn:
        if conn.execute(select(schema.volunteers.c.id).where(schema.volunteers.c.id == volunteer_id)).first() is None:
            raise ApiError(404, "unknown_volunteer", f"no volunteer {volunteer_id}")


@router.get("/{volunteer_id}/balance", response_model=Balance, responses=responses(401, 403, 404, 422))
async def balance(volunteer_id: Id, request: Request, principal: PrincipalDep) -> Response:
    """Served on the event loop through asyncpg: the most frequent read of all."""
    services: Services = request.app.state.services
    if not may_read_without_lookup(principal, volunteer_id):
        await run_in_threadpool(_may_read, services, principal, volunteer_id)
    if services.reads is None:
        found = await run_in_threadpool(LedgerRepository(services.engine).registered_volunteer_balance, volunteer_id)
    else:
        row = await services.reads.balance(volunteer_id)
        found = None if row is None else VolunteerBalance(volunteer_id, *row)
    if found is None:
        raise ApiError(404, "unknown_volunteer", f"no volunteer {volunteer_id}")
    return Response(as_balance(found).model_dump_json(), media_type="application/json")


def as_balance(found: VolunteerBalance) -> Balance:
    return Balance(volunteer_id=found.volunteer_id, balance=credits(found.total), held=credits(found.held),
                   available=credits(found.available))


@router.get("/{volunteer_id}/statement", response_model=Statement, responses=responses(401, 403, 404, 422))
def statement(
    volunteer_id: Id,
    services: ServicesDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(ge=1, description="entry id from `next_before` of the previous page")] = None,
) -> Statement:
    """Entries that moved the volunteer's available credits, newest first."""
    _may_read(services, principal, volunteer_id)
    _known(services, volunteer_id)
    lines = LedgerRepository(services.engine).statement(volunteer_account(volunteer_id), limit=limit + 1,
                                                        before_entry_id=before)
    more, lines = len(lines) > limit, lines[:limit]
    items = [
        StatementLine(entry_id=line.entry_id, event_id=line.event_id, kind=line.kind.value, occurred_at=line.occurred_at,
                      amount=credits(line.amount), related_event_id=line.related_event_id)
        for line in lines
    ]
    next_before = items[-1].entry_id if more else None
    return Statement(volunteer_id=volunteer_id, items=items, next_before=next_before)
