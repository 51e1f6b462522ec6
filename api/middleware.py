"""ASGI middleware: `Idempotency-Key` on writes, and Prometheus request metrics."""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import timedelta
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Principal, principal_for
from api.outages import DATABASE_FAILURES, OUTAGES
from api.publishing import request_event_id
from ledger.pg import schema

MAX_KEY_LENGTH = 200
#: A claim with no answer after this long was left by a process that died mid-request: the next request with the
#: key takes it over (and publishes the same event id, which the ledger applies once).
CLAIM_EXPIRES_S = 60
#: Refusals that stay true however often the same request comes again, so they are kept and replayed like a
#: success; any other 4xx (an unknown log that is still on its way, a full opportunity, a date too old) may be
#: answered differently later, and is not kept (docs/design.md §5.1).
FINAL_CONFLICTS = frozenset({"already_decided", "already_reversed", "booking_closed", "not_reversible",
                             "opportunity_exists", "code_used", "idempotency_key_reused"})

REQUESTS = Counter("timecredits_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "timecredits_http_request_seconds", "HTTP request latency", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


async def _send_json(send: Send, status: int, payload: dict[str, Any], extra: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class IdempotencyMiddleware:
    """The same key with the same body gets the first final answer again; with another body, 409.

    Keys are scoped to the caller's credential (its token id, however the header is spelt) and the path. The first
    request claims the key before it runs, so a concurrent repeat gets 409 `idempotency_in_progress` rather than a
    second event; a claim left unanswered for `CLAIM_EXPIRES_S` is taken over. Only final answers are kept (2xx,
    and the 409s of `FINAL_CONFLICTS`): after any other the request may be retried with the same key, and then
    publishes the same event id as before (`request_event_id`), so an event that reached the broker despite a 503
    is not applied twice.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key, authorization = headers.get("idempotency-key"), headers.get("authorization")
        if key is None or not authorization:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            await _send_json(send, 400, _error("invalid_idempotency_key", f"1 to {MAX_KEY_LENGTH} printable characters"))
            return
        body = await _read_body(receive)
        services = scope["app"].state.services
        engine: Engine = services.engine
        token = authorization.partition(" ")[2].strip() if authorization.lower().startswith("bearer ") else ""
        try:
            principal = (await run_in_threadpool(principal_for, engine, token, services.admin_token,
                                                 services.principals) if token else None)
            if not isinstance(principal, Principal):
                await self.app(scope, _replay(body), send)  # no key is claimed for a caller the API will refuse
                return
            ident = (caller_of(principal), scope["path"], key)
            body_hash = hashlib.sha256(body).digest()
            claimed, row = await run_in_threadpool(_claim, engine, ident, body_hash)
        except DATABASE_FAILURES as exc:  # outside the routes' handlers: answered here, or it would be a 500
            answered = OUTAGES.answer(exc)
            if answered is None:
                raise
            await answered(scope, _replay(body), send)
            return
        if not claimed:
            await self._answer_repeat(send, row, body_hash)
            return

        captured: dict[str, Any] = {"status": 500, "body": b"", "settled": False}

        async def settle() -> None:
            if not captured["settled"]:
                captured["settled"] = True
                try:
                    await run_in_threadpool(_settle, engine, ident, captured["status"], captured["body"])
                except DATABASE_FAILURES as exc:  # the answer stands; the claim expires (CLAIM_EXPIRES_S)
                    if OUTAGES.answer(exc) is None:
                        raise

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
                if not message.get("more_body"):
                    await settle()  # stored before the caller has the answer, so a prompt repeat finds it
            await send(message)

        reset = request_event_id.set(_event_id(ident, body_hash))
        try:
            await self.app(scope, _replay(body), capture)
        finally:
            request_event_id.reset(reset)
            await settle()

    @staticmethod
    async def _answer_repeat(send: Send, row: Any, body_hash: bytes) -> None:
        if bytes(row.body_sha256) != body_hash:
            await _send_json(send, 409, _error("idempotency_key_reused",
                                               "this Idempotency-Key was used with another request body"))
        elif row.status_code is None:
            await _send_json(send, 409, _error("idempotency_in_progress",
                                               "a request with this Idempotency-Key is still being processed"))
        else:
            response = bytes(row.response)
            await send({"type": "http.response.start", "status": row.status_code, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(response)).encode()),
                (b"idempotent-replayed", b"true")]})
            await send({"type": "http.response.body", "body": response})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


_EVENT_IDS = uuid.UUID("0b5c3e8e-6f63-4c52-9f7e-3c1d0f1d2a77")


def _event_id(ident: tuple[bytes, str, str], body_hash: bytes) -> uuid.UUID:
    """The same caller, path, key and body: the same event id, however often the request is retried."""
    caller, path, key = ident
    return uuid.uuid5(_EVENT_IDS, "\n".join((caller.hex(), path, key, body_hash.hex())))


def caller_of(principal: Principal) -> bytes:
    """Whose keys: one credential's (an API token's id, or the bootstrap admin token), not the header's spelling."""
    return hashlib.sha256(f"{principal.role.value}:{principal.token_id or 'bootstrap'}".encode()).digest()


def _claim(engine: Engine, ident: tuple[bytes, str, str], body_hash: bytes) -> tuple[bool, Any]:
    k = schema.idempotency_keys
    caller, path, key = ident
    with engine.begin() as conn:
        statement = insert(k).values(caller=caller, path=path, key=key, body_sha256=body_hash)
        inserted = conn.execute(statement.on_conflict_do_update(  # a new key, or a claim left by a dead process
            index_elements=["caller", "path", "key"],
            set_={"body_sha256": statement.excluded.body_sha256, "created_at": func.now()},
            where=k.c.status_code.is_(None) & (k.c.created_at < func.now() - timedelta(seconds=CLAIM_EXPIRES_S)),
        )).rowcount
        if inserted:
            return True, None
        row = conn.execute(
            select(k.c.body_sha256, k.c.status_code, k.c.response).where(k.c.caller == caller, k.c.path == path, k.c.key == key)
        ).one()
        return False, row


def _settle(engine: Engine, ident: tuple[bytes, str, str], status: int, body: bytes) -> None:
    k = schema.idempotency_keys
    caller, path, key = ident
    where = (k.c.caller == caller, k.c.path == path, k.c.key == key)
    with engine.begin() as conn:
        if is_final(status, body):
            conn.execute(update(k).where(*where).values(status_code=status, response=body))
        else:
            conn.execute(delete(k).where(*where))


def is_final(status: int, body: bytes) -> bool:
    """A success, or a refusal that no later state can change (`FINAL_CONFLICTS`)."""
    if 200 <= status < 300:
        return True
    if status != 409:
        return False
    try:
        return json.loads(body)["error"]["code"] in FINAL_CONFLICTS
    except (ValueError, KeyError, TypeError):
        return False


class MetricsMiddleware:
    """Request counts and latency by route template (not raw path, to keep label sets small) and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(scope["method"], template, str(status["code"])).inc()
            LATENCY.labels(scope["method"], template).observe(time.perf_counter() - started)
