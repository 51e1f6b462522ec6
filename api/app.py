"""The FastAPI application: one router a resource, errors as JSON, idempotent writes, Prometheus metrics."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine

from api.broker import BrokerLink
from api.deps import Services
from api.errors import error_json, install_error_handlers
from api.hotpath import BalanceReadFastPath
from api.limits import BodyLimitMiddleware, RateLimitMiddleware, RateLimits
from api.outages import DATABASE_FAILURES, OUTAGES
from api.middleware import IdempotencyMiddleware, MetricsMiddleware
from api.reads import FastReads
from api.routes import (
    accounts,
    activity,
    corrections,
    dashboard,
    exports,
    hours_queue,
    memberships,
    privacy,
    openreferral,
    registry,
    spend_codes,
    statistics,
    status,
    tokens,
    waitlist,
)
from timecredits.heap import freeze_startup_heap
from ledger.intake import DEFAULT_POLICY, IntakePolicy
from timecredits.mail import SmtpMailer
from timecredits.settings import Settings
from web.app import install as install_web
from web.uploads import UPLOAD_PATHS

DESCRIPTION = """
Time credits for community organisations, volunteers and programme leads.

Writes are events: they are validated, produced to Kafka and answered `202` with an `event_id`;
`GET /v1/events/{event_id}` tells whether the ledger applied or rejected them (and why). Registry writes
(organisations, volunteers, opportunities, tokens) are written at once and answered `201`.
Amounts are decimal strings of credits (`"1.50"`). Errors are `{"error": {"code", "message"}}`.
Every write accepts an `Idempotency-Key` header: the same key and body get the first answer again.
"""


#: The settings' defaults (timecredits.settings), for apps made without settings (tests).
_DEFAULTS = Settings.model_construct()


#: How the API's sessions are named in `pg_stat_activity`, for an operator (and a test) to tell them apart.
API_CONNECTION = {"application_name": "timecredits-api"}


def create_app(services: Services | None = None, *, database_url: str | None = None,
               bootstrap_servers: str | None = None, admin_token: str | None = None, topic_prefix: str = "",
               publish_timeout_s: float = 5.0, max_body_bytes: int = _DEFAULTS.max_body_bytes,
               rate_limits: RateLimits | None = None, policy: IntakePolicy = DEFAULT_POLICY,
               spend_code_guesses: int = _DEFAULTS.spend_code_guesses, mailer: SmtpMailer | None = None,
               dev_mailbox_dir: Path | None = None,
               max_upload_bytes: int = _DEFAULTS.max_upload_bytes,
               no_show_forfeit: bool = _DEFAULTS.no_show_cost == "full") -> FastAPI:
    """The app, for `services` already made (tests) or for the given endpoints (created at start-up)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        made = services is None
        if made:
            assert database_url and bootstrap_servers
            app.state.services = Services(
                # As many connections as the thread pool has threads (anyio's default, 40): a connection
                # made for overflow and closed on return would start a PostgreSQL process per request.
                engine=create_engine(database_url, pool_size=40, max_overflow=0, pool_timeout=30,
                                     pool_pre_ping=True, connect_args=API_CONNECTION),
                producer=BrokerLink(bootstrap_servers, topic_prefix=topic_prefix, timeout_s=publish_timeout_s),
                admin_token=admin_token,
                publish_timeout_s=publish_timeout_s,
                reads=FastReads(database_url),
                policy=policy,
                no_show_forfeit=no_show_forfeit,
                spend_code_guesses=spend_code_guesses,
                mailer=mailer,
                dev_mailbox_dir=dev_mailbox_dir,
            )
            await app.state.services.reads.start()
            freeze_startup_heap()  # a server process; not for apps that tests make and drop by the hundred
        else:
            app.state.services = services
        try:
            yield
        finally:
            if made:
                app.state.services.producer.close()
                app.state.services.engine.dispose()
                await app.state.services.reads.close()

    app = FastAPI(title="timecredits", version="1", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    # Balance reads first: routes are matched in order, and they are the most frequent request by far.
    for module in (accounts, registry, memberships, tokens, spend_codes, privacy, activity, hours_queue, exports,
                   waitlist, corrections, statistics, status, openreferral, dashboard):
        app.include_router(module.router)

    async def _database_failure(request: Request, exc: Exception) -> JSONResponse:
        answered = OUTAGES.answer(exc)
        if answered is not None:  # the database away or read-only: 503, said in the log once a minute
            return answered
        return await _unexpected(request, exc)

    for failure in DATABASE_FAILURES:
        app.add_exception_handler(failure, _database_failure)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("api").exception("unexpected error on %s %s", request.method, request.url.path)
        return error_json(500, "internal_error", "an unexpected error; it has been logged")

    @app.exception_handler(404)
    async def _unknown_path(request: Request, _: Exception) -> JSONResponse:
        return error_json(404, "not_found", f"no such path: {request.url.path}")

    install_web(app)
    app.add_middleware(BalanceReadFastPath)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(MetricsMiddleware)
    # Outermost: a request over its rate or with too large a body is refused before anything else runs.
    app.add_middleware(RateLimitMiddleware, limits=rate_limits or RateLimits.of(_DEFAULTS))
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes, upload_paths=UPLOAD_PATHS,
                       upload_max_bytes=max_upload_bytes)
    return app

