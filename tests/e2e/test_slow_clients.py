"""Slow and hostile clients against the real API process (docs/design.md §5.5): while hundreds of connections
send nothing, dribble their headers or their body, or sit idle after a request, other clients get their answers;
each slow one is closed by the server (`408 request_timeout` where no answer had started), whatever it keeps
sending; headers over the limit get `431 headers_too_large`. The limits are set low here so that the module is
short; the durations are printed, never asserted."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.e2e.api_stack import Api, ApiProcess, ready_api
from tests.e2e.conftest import Stack, _make_stack
from tests.e2e.faults import counter

pytestmark = [pytest.mark.broker, pytest.mark.integration]

ADMIN_TOKEN = "tc_slow_clients_admin_" + uuid.uuid4().hex
LIMIT_S = 4  # the header, body and keep-alive timeouts of the API under test
MAX_HEADER_BYTES = 8 * 1024
AREA = "E09000030"
#: How long the test waits for the server to close a slow connection before it fails: far beyond the limit.
GIVE_UP_S = 60


@pytest.fixture(scope="module")
def slow_api(embedded_postgres: str, primary_template: str, kafka_bootstrap: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    tmp = tmp_path_factory.mktemp("slow-clients")
    stack: Stack
    for stack in _make_stack(embedded_postgres, primary_template, kafka_bootstrap, tmp):
        env = {**stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN,
               "TIMECREDITS_HTTP_HEADER_TIMEOUT": str(LIMIT_S), "TIMECREDITS_HTTP_BODY_TIMEOUT": str(LIMIT_S),
               "TIMECREDITS_HTTP_KEEP_ALIVE_TIMEOUT": str(LIMIT_S),
               "TIMECREDITS_HTTP_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES)}
        with ready_api(env, tmp / "api.log") as process:
            yield process


# --- the slow clients: each connects, misbehaves until the server closes the connection, and says what came back

@dataclass
class Closed:
    kind: str
    answer: bytes  # what the server wrote before closing
    after_s: float  # from connecting to the close


async def _hold(port: int, kind: str) -> Closed:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    received = bytearray()

    async def read_until_closed() -> None:
        while chunk := await reader.read(65536):
            received.extend(chunk)

    reading = asyncio.ensure_future(read_until_closed())

    async def dribble(data: bytes, every_s: float = 0.25) -> None:
        for byte in data:
            if reading.done():
                return
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:  # closed by the server while this byte went out
                return
            await asyncio.sleep(every_s)

    try:
        if kind == "silent":  # connects and sends nothing
            pass
        elif kind == "slow_headers":  # the request line and headers a byte at a time, never ending
            await dribble(b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Slow: " + b"x" * 10_000)
        elif kind == "unfinished_body":  # complete headers, then 10 of the 100 bytes declared
            writer.write(b"POST /v1/hours HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"volunteer")
        elif kind == "slow_body":  # a body a byte at a time: it keeps coming, but not within the limit
            writer.write(b"POST /v1/hours HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 10000\r\n\r\n")
            await dribble(b" " * 10_000)
        elif kind == "unfinished_chunks":  # a chunked body whose last chunk never comes
            writer.write(b"POST /v1/hours HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"vol\r\n")
        elif kind == "idle_keep_alive":  # one request answered, then nothing on the open connection
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
        await asyncio.wait_for(asyncio.shield(reading), GIVE_UP_S)
    finally:
        writer.close()
    return Closed(kind, bytes(received), time.monotonic() - started)


KINDS = ("silent", "slow_headers", "unfinished_body", "slow_body", "unfinished_chunks", "idle_keep_alive")
#: What each kind makes the server count in `timecredits_http_connections_cut_off_total` (idle keep-alive
#: connections are closed by uvicorn's own timeout, uncounted).
CUT_OFF_AS = {"silent": "slow_headers", "slow_headers": "slow_headers", "unfinished_body": "slow_body",
              "slow_body": "slow_body", "unfinished_chunks": "slow_body"}


def _status(answer: bytes) -> int | None:
    """The status of the last response in what the server wrote (None when it wrote nothing)."""
    at = answer.rfind(b"HTTP/1.1 ")
    return int(answer[at + 9:at + 12]) if at >= 0 else None


def _normal_client(url: str, rounds: int) -> list[int]:
    """What an ordinary client does: a volunteer signed up, their balance read, on one keep-alive connection and
    on a new connection each time; the statuses it got."""
    statuses: list[int] = []
    api = Api(url, ADMIN_TOKEN, timeout=30)
    try:
        org = f"org-slow-{uuid.uuid4().hex[:8]}"
        api.organisation(org, ["community"], AREA)
        for n in range(rounds):
            volunteer = api.volunteer(f"slow-{n}", AREA, member_of=[org])
            statuses.append(201)
            statuses.append(api.get(f"/v1/volunteers/{volunteer}/balance", ADMIN_TOKEN).status_code)
            statuses.append(httpx.get(f"{url}/v1/volunteers/{volunteer}/balance", timeout=30,
                                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code)
    finally:
        api.close()
    return statuses


def test_slow_clients_are_cut_off_while_others_get_their_answers(slow_api: ApiProcess) -> None:
    before = slow_api_cut_offs(slow_api)
    per_kind = 40

    async def scenario() -> tuple[list[Closed], list[int], float]:
        holders = [asyncio.ensure_future(_hold(slow_api.port, kind)) for kind in KINDS for _ in range(per_kind)]
        await asyncio.sleep(0.5)  # every slow connection is open by now
        started = time.monotonic()
        statuses = await asyncio.to_thread(_normal_client, slow_api.url, 10)
        normal_s = time.monotonic() - started
        return list(await asyncio.gather(*holders)), statuses, normal_s

    closed, statuses, normal_s = asyncio.run(scenario())

    assert statuses == [201, 200, 200] * 10, Counter(statuses)
    by_kind: dict[str, list[Closed]] = {}
    for one in closed:
        by_kind.setdefault(one.kind, []).append(one)
    for kind, ones in by_kind.items():
        expected = [200] if kind == "idle_keep_alive" else [408]
        assert sorted({_status(one.answer) for one in ones}) == expected, (kind, ones[0].answer[:300])
        if kind != "idle_keep_alive":
            assert all(b'"request_timeout"' in one.answer for one in ones), (kind, ones[0].answer[:300])
    cut_offs = slow_api_cut_offs(slow_api) - before
    assert cut_offs == Counter({reason: per_kind * sum(1 for k in CUT_OFF_AS.values() if k == reason)
                                for reason in set(CUT_OFF_AS.values())})
    print(f"\n{len(closed)} slow connections (limits {LIMIT_S} s); the normal client's 30 requests took "
          f"{normal_s:.2f} s meanwhile; closed after " + ", ".join(
              f"{kind} max {max(c.after_s for c in ones):.1f} s" for kind, ones in by_kind.items()))


def slow_api_cut_offs(process: ApiProcess) -> Counter[str]:
    """`timecredits_http_connections_cut_off_total` by reason, from the API's /metrics."""
    text = httpx.get(f"{process.url}/metrics", timeout=10).text
    found: Counter[str] = Counter()
    for reason in ("slow_headers", "slow_body", "headers_too_large"):
        found[reason] = int(counter(text, f'timecredits_http_connections_cut_off_total{{reason="{reason}"}}'))
    return +found


def test_headers_over_the_limit_get_431_and_headers_within_it_an_answer(slow_api: ApiProcess) -> None:
    before = slow_api_cut_offs(slow_api)
    with httpx.Client(base_url=slow_api.url, timeout=30) as client:
        within = client.get("/healthz", headers={"X-Padding": "x" * (MAX_HEADER_BYTES // 2)})
        over = client.get("/healthz", headers={"X-Padding": "x" * (MAX_HEADER_BYTES + 1)})
        many = httpx.get(f"{slow_api.url}/healthz", timeout=30,
                         headers={f"X-Many-{n}": "y" * 100 for n in range(MAX_HEADER_BYTES // 100)})
    assert within.status_code == 200
    assert (over.status_code, over.json()["error"]["code"]) == (431, "headers_too_large")
    assert over.headers["connection"] == "close"
    assert (many.status_code, many.json()["error"]["code"]) == (431, "headers_too_large")
    assert slow_api_cut_offs(slow_api) - before == Counter({"headers_too_large": 2})


def test_a_client_slow_but_within_the_limits_gets_its_answer(slow_api: ApiProcess) -> None:
    """Headers sent in pieces over a quarter of the limit, then a body likewise: answered, not cut off."""
    request = (f"POST /v1/organisations HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
               f"Content-Type: application/json\r\n").encode()
    org = f"org-patient-{uuid.uuid4().hex[:8]}"
    body = (f'{{"id": "{org}", "name": "Patient", "area": "{AREA}", "kinds": ["community"]}}').encode()

    async def patient() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", slow_api.port)
        try:
            for piece in (request[:20], request[20:], f"Content-Length: {len(body)}\r\n\r\n".encode(),
                          body[:10], body[10:]):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(LIMIT_S / 4 / 5)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            return head
        finally:
            writer.close()

    before = slow_api_cut_offs(slow_api)
    head = asyncio.run(patient())
    assert _status(head) == 201, head
    assert slow_api_cut_offs(slow_api) == before
