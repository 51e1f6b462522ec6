"""A database that is away or cannot take writes is an outage, not a bug: every request during it gets `503`
with a code, and the log says so once a minute rather than a traceback a request (docs/design.md §5.1).

Which failures are outages is the consumers' rule (`consumers.failures.classify`), shared so that the API and the
workers never disagree about what a database error means."""
from __future__ import annotations

import logging
import threading
import time

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.responses import JSONResponse

from api.errors import error_json
from consumers.failures import Verdict, classify

log = logging.getLogger("api")

#: Codes a request gets, by the kind of outage.
_CODES = {
    "read_only": ("database_read_only", "the database cannot take writes at the moment; try again shortly"),
    "disk_full": ("database_full", "the database is out of space; nothing was done, try again later"),
    "insufficient_resources": ("database_busy", "the database is out of resources; try again shortly"),
}
_UNAVAILABLE = ("database_unavailable", "the database cannot be reached; nothing was done, try again shortly")
#: How often the log says an outage goes on.
LOG_EVERY_S = 60.0
#: What a 503 tells the client to wait before trying again.
RETRY_AFTER_S = 5


def outage_of(exc: BaseException) -> tuple[str, str] | None:
    """(code, message) for a request that failed because the database is away or refuses writes; None for any
    other failure, which stays a 500 with its traceback logged."""
    if isinstance(exc, (ConnectionError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                        asyncpg.InterfaceError)):
        return _UNAVAILABLE  # the fast reads' asyncpg pool (api/reads.py) cannot connect
    failure = classify(exc)
    if failure.verdict is Verdict.WAIT_AND_REPORT:
        return _CODES.get(failure.reason, _UNAVAILABLE)
    if failure.verdict is Verdict.RETRY:
        return _UNAVAILABLE
    return None


class OutageLog:
    """One warning when an outage is first met, then one a minute while requests keep meeting it."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self._every_s = every_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def answer(self, exc: BaseException) -> JSONResponse | None:
        """The 503 for a request that met an outage (noted for the log), or None for any other failure."""
        outage = outage_of(exc)
        if outage is None:
            return None
        code, message = outage
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self.refused(code, f"{type(exc).__name__}: {first}")
        return error_json(503, code, message, {"Retry-After": str(RETRY_AFTER_S)})

    def refused(self, code: str, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._since[code] = self._since.get(code, 0) + 1
            if now - self._last.get(code, -self._every_s) < self._every_s:
                return
            count, self._since[code], self._last[code] = self._since[code], 0, now
        log.warning("%s: %d request(s) answered 503 since the last report (%s)", code, count, detail[:300])


#: Failures a route may raise that can be an outage: each gets a handler inside the routing (so the answer is sent
#: and nothing is raised on to the server, which would log a traceback a request).
DATABASE_FAILURES: tuple[type[BaseException], ...] = (
    DBAPIError, PoolTimeout, ConnectionError, asyncpg.PostgresError, asyncpg.InterfaceError)


#: The API process's one log of outages, shared by the routes' handlers and the middlewares.
OUTAGES = OutageLog()
