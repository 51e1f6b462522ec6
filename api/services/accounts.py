"""A volunteer's statement, for the API and the web app alike (docs/design.md §8.2): who may read it, and its
pages, newest first."""
from __future__ import annotations

from sqlalchemy import select

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from ledger.accounts import volunteer_account
from ledger.pg import schema
from ledger.pg.registry import is_current_member
from ledger.pg.repository import LedgerRepository, StatementLine


def may_read_without_lookup(principal: Principal, volunteer_id: str) -> bool:
    """An admin, or that volunteer: the readers who need no membership looked up (docs/design.md §5.4)."""
    return principal.role is Role.ADMIN or (principal.role is Role.VOLUNTEER and principal.volunteer_id == volunteer_id)


def may_read(services: Services, principal: Principal, volunteer_id: str) -> None:
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


def known(services: Services, volunteer_id: str) -> None:
    with services.engine.connect() as conn:
        if conn.execute(select(schema.volunteers.c.id).where(schema.volunteers.c.id == volunteer_id)).first() is None:
            raise ApiError(404, "unknown_volunteer", f"no volunteer {volunteer_id}")


def statement(services: Services, principal: Principal, volunteer_id: str, limit: int,
              before: int | None) -> tuple[list[StatementLine], int | None]:
    """One page of the entries that moved the volunteer's available credits, newest first, and the entry id to
    pass as `before` for the next page (None on the last)."""
    may_read(services, principal, volunteer_id)
    known(services, volunteer_id)
    lines = LedgerRepository(services.engine).statement(volunteer_account(volunteer_id), limit=limit + 1,
                                                        before_entry_id=before)
    more, lines = len(lines) > limit, lines[:limit]
    return lines, (lines[-1].entry_id if more else None)
