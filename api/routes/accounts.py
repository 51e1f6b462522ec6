"""A volunteer's balance and statement, read from PostgreSQL."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import PrincipalDep, Services, ServicesDep
from api.errors import ApiError, responses
from api.models import Balance, Id, Statement, StatementLine, credits
from api.services import accounts, corrections
from api.services.accounts import may_read, may_read_without_lookup
from ledger.domain import EntryKind
from ledger.pg.repository import LedgerRepository, VolunteerBalance

__all__ = ["as_balance", "may_read_without_lookup", "router"]

router = APIRouter(prefix="/v1/volunteers", tags=["balances"])


@router.get("/{volunteer_id}/balance", response_model=Balance, responses=responses(401, 403, 404, 422))
async def balance(volunteer_id: Id, request: Request, principal: PrincipalDep) -> Response:
    """Served on the event loop through asyncpg: the most frequent read of all."""
    services: Services = request.app.state.services
    if not may_read_without_lookup(principal, volunteer_id):
        await run_in_threadpool(may_read, services, principal, volunteer_id)
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
    lines, next_before = accounts.statement(services, principal, volunteer_id, limit, before)
    why = corrections.reasons(services, [line.event_id for line in lines if line.kind is EntryKind.ENTRY_REVERSED])
    items = [
        StatementLine(entry_id=line.entry_id, event_id=line.event_id, kind=line.kind.value, occurred_at=line.occurred_at,
                      amount=credits(line.amount), related_event_id=line.related_event_id,
                      reason_code=why[line.event_id].reason_code if line.event_id in why else None,
                      reason=why[line.event_id].reason if line.event_id in why else None)
        for line in lines
    ]
    return Statement(volunteer_id=volunteer_id, items=items, next_before=next_before)
