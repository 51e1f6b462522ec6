"""Typed dependencies: the services the app runs with, and who is asking."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from sqlalchemy import Engine

from api.auth import Principal, PrincipalCache, Refusal, Role, principal_for_async
from api.broker import BrokerLink
from api.errors import ApiError
from api.reads import FastReads
from ledger.intake import DEFAULT_POLICY, IntakePolicy
from timecredits.mail import SmtpMailer


@dataclass
class Services:
    engine: Engine
    producer: BrokerLink
    admin_token: str | None
    publish_timeout_s: float = 5.0
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    #: The same database through asyncpg, for the reads served on the event loop (tokens, balances).
    reads: FastReads | None = None
    #: The programme's settings the intake rules apply, as the worker does (docs/design.md §5.6).
    policy: IntakePolicy = DEFAULT_POLICY
    #: The programme's no-show cost (docs/design.md §5.11): true, a missed booking's credits go to the partner.
    no_show_forfeit: bool = False
    #: Wrong spend codes an actor may type in 15 minutes.
    spend_code_guesses: int = 10
    #: Sends the web app's sign-in links (docs/design.md §8.1); None where no mail server is set up.
    mailer: SmtpMailer | None = None
    #: The development mailbox's directory, for the admin's Mailbox page (docs/design.md §8.4).
    dev_mailbox_dir: Path | None = None


async def get_services(request: Request) -> Services:
    """Async although it awaits nothing: FastAPI runs a plain `def` dependency in a worker thread."""
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False, description="A token from `POST /v1/tokens` or `timecredits tokens create`.")


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    # The services straight from the request, not through `ServicesDep`: every sub-dependency FastAPI solves
    # costs tens of microseconds a request, and this one runs on every authenticated request.
    services: Services = request.app.state.services
    if (credentials is None or not credentials.credentials) and request.method in _READS:
        session = await _session_principal(request, services)
        if session is not None:
            return session
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token>")
    principal = await principal_for_async(services.reads, services.engine, credentials.credentials,
                                          services.admin_token, services.principals)
    if isinstance(principal, Refusal):
        raise ApiError(401, principal.value, _REFUSALS[principal])
    return principal


#: A web app session may read through the API (the lead's dashboard in the app), never write: a cookie rides
#: along with any request a browser makes, so a write by cookie would need the app's CSRF token (docs/design.md §8.1).
_READS = frozenset({"GET", "HEAD"})
SESSION_COOKIE = "tc_session"


async def _session_principal(request: Request, services: Services) -> Principal | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    from web.people import resume_session  # the web app's sessions; imported here, as the API works without them

    session = await run_in_threadpool(resume_session, services.engine, cookie)
    return session.person.principal() if session is not None else None


_REFUSALS = {
    Refusal.UNKNOWN: "this token is not known: check it was copied whole",
    Refusal.REVOKED: "this token was revoked: ask for a new one",
    Refusal.EXPIRED: "this token has expired: ask for a new one",
}


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only `roles` through (403 `forbidden` for the others)."""

    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise ApiError(403, "forbidden", f"this needs one of the roles: {allowed}")
        return principal

    return check


def forbid(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)
