"""The balance read's fast path (api/hotpath.py) answers exactly what the FastAPI route answers, and only the
plain success: every other case reaches the route."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from api.app import create_app
from api.auth import Role, create_token
from api.deps import Services
from api.hotpath import BalanceReadFastPath
from api.reads import FastReads
from ledger.domain import BookOpportunity, EarnCredits

from tests.ledger_helpers import LedgerDriver, new_id

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
ADMIN = "tc_bootstrap-admin-for-this-test"


def _app(services: Services, *, fast_path: bool) -> Any:
    app = create_app(services)
    if not fast_path:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not BalanceReadFastPath]
    app.state.services = services  # what the lifespan does for services made by the caller
    return app


def test_the_fast_path_and_the_route_give_the_same_answers(engine: Engine) -> None:
    with engine.begin() as conn:
        for volunteer in ("ana", "ben", "idle"):
            conn.execute(text("INSERT INTO volunteers (id, area, consent_stats) VALUES (:v, 'E09000025', true)"),
                         {"v": volunteer})
    LedgerDriver(engine).apply([
        EarnCredits(new_id(), NOW, "ana", "org1", 525),
        BookOpportunity(new_id(), NOW, "ana", "lido", 150, opportunity_id="swim"),
        EarnCredits(new_id(), NOW, "ben", "org1", 5),
    ])
    lead, _ = create_token(engine, Role.LEAD)
    org, _ = create_token(engine, Role.ORG, org_id="org1")  # ana and ben are its members, idle is not
    ana, _ = create_token(engine, Role.VOLUNTEER, volunteer_id="ana")
    cases = [
        ("/v1/volunteers/ana/balance", f"Bearer {org}"),
        ("/v1/volunteers/ana/balance", f"bearer {ana}"),  # the scheme is case-insensitive
        ("/v1/volunteers/idle/balance", f"Bearer {ADMIN}"),
        ("/v1/volunteers/ben/balance?unused=1", f"Bearer {org}"),
        ("/v1/volunteers/ben/balance", f"Bearer {ana}"),  # another volunteer's: 403
        ("/v1/volunteers/ana/balance", f"Bearer {lead}"),  # a lead reads statistics: 403
        ("/v1/volunteers/idle/balance", f"Bearer {org}"),  # not its member: 403
        ("/v1/volunteers/nobody/balance", f"Bearer {ADMIN}"),  # unknown: 404
        ("/v1/volunteers/ana/balance", None),  # 401
        ("/v1/volunteers/ana/balance", "Bearer tc_unknown"),  # 401
        ("/v1/volunteers/ana/balance", "Basic YW5hOng="),  # 401
        ("/v1/volunteers/-ana/balance", f"Bearer {ADMIN}"),  # not an id: 422
        (f"/v1/volunteers/{'a' * 65}/balance", f"Bearer {ADMIN}"),  # too long: 422
    ]
    url = engine.url.render_as_string(hide_password=False)

    async def answers(fast_path: bool) -> list[tuple[int, str, bytes]]:
        reads = FastReads(url, size=2)
        await reads.start()
        try:
            services = Services(engine=engine, producer=None, admin_token=ADMIN, reads=reads)  # type: ignore[arg-type]
            transport = httpx.ASGITransport(app=_app(services, fast_path=fast_path))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                found = []
                for path, authorization in cases:
                    headers = {"Authorization": authorization} if authorization else {}
                    response = await client.get(path, headers=headers)
                    found.append((response.status_code, response.headers["content-type"], response.content))
                return found
        finally:
            await reads.close()

    fast, routed = asyncio.run(answers(True)), asyncio.run(answers(False))
    assert fast == routed
    assert [status for status, _, _ in fast] == [200, 200, 200, 200, 403, 403, 403, 404, 401, 401, 401, 422, 422]
    assert b'"not_a_member"' in fast[6][2] and b'"forbidden"' in fast[5][2]
    assert fast[0][2] == b'{"volunteer_id":"ana","balance":"5.25","held":"1.50","available":"3.75"}'
    assert fast[2][2] == b'{"volunteer_id":"idle","balance":"0.00","held":"0.00","available":"0.00"}'


def test_only_the_plain_success_is_answered_without_the_route(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO volunteers (id, area, consent_stats) VALUES ('ana', 'E09000025', true)"))
    admin, _ = create_token(engine, Role.ADMIN)
    lead, _ = create_token(engine, Role.LEAD)
    url = engine.url.render_as_string(hide_password=False)
    routed: list[str] = []

    async def route(scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    class App:  # what the fast path reads from the scope: `scope["app"].state.services`
        class state:
            services: Services

    async def run() -> list[int]:
        reads = FastReads(url, size=2)
        await reads.start()
        App.state.services = Services(engine=engine, producer=None, admin_token=None, reads=reads)  # type: ignore[arg-type]
        fast_path = BalanceReadFastPath(route)
        statuses = []
        try:
            for method, path, token in [("GET", "/v1/volunteers/ana/balance", admin),
                                        ("GET", "/v1/volunteers/nobody/balance", admin),
                                        ("GET", "/v1/volunteers/ana/balance", "tc_unknown"),
                                        ("POST", "/v1/volunteers/ana/balance", admin),
                                        ("GET", "/v1/volunteers/ana/statement", admin),
                                        ("GET", "/v1/volunteers/ana/balance", lead)]:
                sent: list[dict[str, Any]] = []

                async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
                    sent.append(message)

                scope = {"type": "http", "method": method, "path": path, "app": App,
                         "headers": [(b"authorization", f"Bearer {token}".encode())]}
                await fast_path(scope, None, send)
                statuses.append(sent[0]["status"])
        finally:
            await reads.close()
        return statuses

    assert asyncio.run(run()) == [200, 599, 599, 599, 599, 599]
    assert routed == ["/v1/volunteers/nobody/balance", "/v1/volunteers/ana/balance", "/v1/volunteers/ana/balance",
                      "/v1/volunteers/ana/statement", "/v1/volunteers/ana/balance"]
