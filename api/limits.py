"""Limits at the edge, before anything else runs: the size of a request body, and rate limits on writes and on
failed authentication (docs/design.md §5.5). Pure ASGI, so a refused request costs no routing and no parsing."""
from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from timecredits.settings import Settings

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _refuse(send: Send, status: int, code: str, message: str,
                  extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body})


def _in_words(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB" if size >= 1024 * 1024 else f"{size / 1024:g} KiB"


class BodyLimitMiddleware:
    """Refuse a body over `max_bytes` with 413 `payload_too_large`: at once from `Content-Length`, else (a
    chunked body) as soon as what has arrived passes the cap, without reading the rest.

    The body is read here, up to the cap, and handed on whole; the app reads it as it would have.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, upload_paths: tuple[str, ...] = (),
                 upload_max_bytes: int = 0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        #: Paths that take a file (the web app's spreadsheet upload) may send up to `upload_max_bytes`.
        self.upload_paths = upload_paths
        self.upload_max_bytes = max(upload_max_bytes, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length, chunked = headers.get("content-length"), "transfer-encoding" in headers
        if length is None and not chunked:
            await self.app(scope, receive, send)
            return
        cap = self.upload_max_bytes if scope["path"] in self.upload_paths else self.max_bytes
        too_large = f"a request body may be at most {_in_words(cap)}"
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _refuse(send, 400, "bad_request", "Content-Length is not a number")
                return
            if declared > cap:
                await _refuse(send, 413, "payload_too_large", too_large)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                await _refuse(send, 413, "payload_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once, then the real channel (so that a disconnect is still seen when it happens)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class TokenBuckets:
    """A token bucket a key: `rate` a second, up to `burst` at once. In memory, in one process.

    At most `max_keys` keys are kept; past that, the full buckets (keys not seen for a while) are forgotten,
    and if none is full, all of them, so that many addresses cannot grow the table without bound.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = float(burst)
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, now: float) -> float:
        level, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, level + (now - at) * self.rate)

    def wait(self, key: str) -> float:
        """Seconds until `key` may go again (0: now), without taking anything."""
        level = self._level(key, self._clock())
        return 0.0 if level >= 1 else (1 - level) / self.rate

    def take(self, key: str) -> float:
        """Take one for `key` if there is one (answers 0), else the seconds until there will be."""
        now = self._clock()
        level = self._level(key, now)
        if level < 1:
            self._buckets[key] = (level, now)
            return (1 - level) / self.rate
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._forget_full(now)
        self._buckets[key] = (level - 1, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        full = [k for k, (level, at) in self._buckets.items() if level + (now - at) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()


@dataclass(frozen=True)
class RateLimits:
    writes_per_s: float
    writes_burst: int
    auth_failures_per_min: float
    auth_failures_burst: int

    @classmethod
    def of(cls, settings: Settings) -> RateLimits:
        return cls(settings.rate_writes_per_s, settings.rate_writes_burst, settings.rate_auth_failures_per_min,
                   settings.rate_auth_failures_burst)


class RateLimitMiddleware:
    """429 `rate_limited` with `Retry-After` for a credential or an address over its write rate, and for an
    address whose requests were refused authentication (401) too often. Each API process keeps its own
    buckets (docs/design.md §5.5)."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.writes = TokenBuckets(limits.writes_per_s, limits.writes_burst)
        self.failures = TokenBuckets(limits.auth_failures_per_min / 60.0, limits.auth_failures_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = scope["client"][0] if scope.get("client") else "unknown"
        if scope["path"].startswith("/v1/") and (wait := self.failures.wait(address)):
            await self._too_many(send, wait, "too many requests from this address were refused for their "
                                             "credentials")
            return
        if scope["method"] in WRITE_METHODS:
            authorization = Headers(scope=scope).get("authorization")
            credential = "c:" + hashlib.sha256(authorization.encode()).hexdigest() if authorization else None
            wait = self.writes.take(credential) if credential else 0.0
            if not wait:
                wait = self.writes.take("a:" + address)
            if wait:
                await self._too_many(send, wait, "too many changes in a short time")
                return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.failures.take(address)
            await send(message)

        await self.app(scope, receive, watch)

    @staticmethod
    async def _too_many(send: Send, wait: float, why: str) -> None:
        seconds = max(1, math.ceil(wait))
        plural = "s" if seconds != 1 else ""
        await _refuse(send, 429, "rate_limited", f"{why}: try again in {seconds} second{plural}",
                      ((b"retry-after", str(seconds).encode()),))
