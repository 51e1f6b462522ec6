"""Limits on a client's connection that uvicorn does not set itself (docs/design.md §5.5): how long its request's
headers may take to arrive, how large they may be, and how long its body may take.

uvicorn times only the idle wait between keep-alive requests. A connection that sends nothing, sends its headers
a byte a minute, or declares a body and never sends it would otherwise be held for ever, and enough of them use
up the process's file descriptors. `GuardedHttpToolsProtocol` is uvicorn's own httptools protocol with three
timers and a byte count:

- the **headers** of a request must be complete within `TIMECREDITS_HTTP_HEADER_TIMEOUT` seconds of the
  connection opening (its first request) or of the request's first byte (the next ones on a keep-alive
  connection, whose idle wait before that byte stays uvicorn's keep-alive timeout);
- they may be at most `TIMECREDITS_HTTP_MAX_HEADER_BYTES` (the request line with them): httptools itself has no
  limit, so a client could otherwise send headers for as long as the timeout lets it;
- the **body** must be complete within `TIMECREDITS_HTTP_BODY_TIMEOUT` seconds of the end of the headers.

A client over a limit gets `408 request_timeout` or `431 headers_too_large` when no answer has started, and the
connection is closed; the app, if it was waiting for the body, sees the client disconnect. Time the app spends on
a request once its body is in is never counted.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from timecredits.settings import get_settings

CUT_OFF = Counter("timecredits_http_connections_cut_off_total",
                  "Connections the API closed because a client was too slow or its headers too large", ["reason"])


def _answer(status: int, phrase: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n")
    return head.encode("ascii") + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the header and body timeouts and the header size limit above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()  # read once per process; cached
        self._header_timeout = settings.http_header_timeout_s
        self._body_timeout = settings.http_body_timeout_s
        self._max_header_bytes = settings.http_max_header_bytes
        self._timer: asyncio.TimerHandle | None = None
        #: Bytes received since the request began, while its headers are incomplete; None once they are.
        self._header_bytes: int | None = 0
        self._parsed_bytes = 0  # the request line and headers as parsed
        self._cut_off = False

    # -- the timers -----------------------------------------------------------------------------------------------
    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._too_slow, reason)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self, reason: str) -> None:
        self._timer = None
        phase = "headers" if reason == "slow_headers" else "body"
        self._close(reason, _answer(408, "Request Timeout", "request_timeout",
                                    f"the request's {phase} did not arrive in time; the connection is closed"))

    def _close(self, reason: str, answer: bytes) -> None:
        if self._cut_off or self.transport.is_closing():
            return
        self._cut_off = True
        self._disarm()
        CUT_OFF.labels(reason).inc()
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:  # no answer being written
            self.transport.write(answer)
        if cycle is not None and not cycle.response_complete:
            # An app waiting for the body sees the client gone, and its answer, should it come, is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    # -- uvicorn's callbacks ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._header_timeout, "slow_headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_bytes is not None:
            self._header_bytes += len(data)
        super().data_received(data)
        # Still within the headers after this read (so headers that never end are stopped before they are
        # parsed); a body that came in the same read is never counted. Headers complete within one read are
        # measured as parsed, in `on_headers_complete`.
        if self._header_bytes is not None and self._header_bytes > self._max_header_bytes:
            self._too_large()

    def _too_large(self) -> None:
        self._close("headers_too_large", _answer(
            431, "Request Header Fields Too Large", "headers_too_large",
            f"a request's headers may be at most {self._max_header_bytes // 1024} KiB; the connection is closed"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_bytes = 0
        if self._timer is None:  # the first request's timer runs from the connection
            self._arm(self._header_timeout, "slow_headers")

    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_bytes += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._header_bytes = None
        if self._parsed_bytes > self._max_header_bytes:
            self._too_large()  # the app never sees this request
            return
        self._arm(self._body_timeout, "slow_body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._cut_off:  # the parser may go on through the rest of a read after a cut-off
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._header_bytes = 0  # what comes next on the connection is the next request's
        if not self._cut_off:
            super().on_message_complete()
