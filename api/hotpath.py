"""`GET /v1/volunteers/{id}/balance`, the most frequent request, answered without FastAPI's routing and
dependency solving when everything is in order.

Why: for a read that is one asyncpg round trip, route matching, dependency solving and response validation
cost more CPU in the API process than the read itself. This path
answers only the plain success: a well-formed id, a bearer token that resolves, a caller allowed to read that
balance without a lookup (an admin or that volunteer; an organisation's membership is checked by the
route, docs/design.md §5.4), a registered volunteer. Anything else (no or bad token, another volunteer's balance, an unknown
volunteer, an error) is passed on untouched to the FastAPI route, which gives the documented answer. The
route stays the single description of the endpoint in the OpenAPI document, and the tests hold both paths to
the same answers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Principal, principal_for_async
from api.routes.accounts import as_balance, may_read_without_lookup
from ledger.pg.repository import VolunteerBalance

ROUTE_PATH = "/v1/volunteers/{volunteer_id}/balance"
_PATH = re.compile(r"/v1/volunteers/([A-Za-z0-9][A-Za-z0-9._-]{0,63})/balance")


@dataclass(frozen=True)
class _Route:
    path: str


_ROUTE = _Route(ROUTE_PATH)


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class BalanceReadFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _PATH.fullmatch(scope["path"])
            if match is not None:
                body = await self._answer(scope, match.group(1))
                if body is not None:
                    scope["route"] = _ROUTE  # metrics label it by the route's template, as for FastAPI's answers
                    await send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(scope: Scope, volunteer_id: str) -> bytes | None:
        """The success body, or None to let the FastAPI route answer."""
        services = scope["app"].state.services
        token = _bearer_token(scope)
        if token is None or services.reads is None:
            return None
        try:
            principal = await principal_for_async(services.reads, services.engine, token, services.admin_token,
                                                  services.principals)
            if not isinstance(principal, Principal) or not may_read_without_lookup(principal, volunteer_id):
                return None
            row = await services.reads.balance(volunteer_id)
        except Exception:  # noqa: BLE001 - the route reads again and answers the error as documented
            return None
        if row is None:
            return None
        return as_balance(VolunteerBalance(volunteer_id, *row)).model_dump_json().encode()
