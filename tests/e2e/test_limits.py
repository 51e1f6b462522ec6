"""Limits at the edge over real HTTP (docs/design.md §5.4): a body too large is refused before it is read, and
writes and failed authentications beyond their rate get 429 with Retry-After."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.e2e.api_stack import Api, ApiProcess, error_code, ready_api
from tests.e2e.conftest import Stack

pytestmark = [pytest.mark.broker, pytest.mark.integration]

ADMIN_TOKEN = "tc_limits_admin_" + uuid.uuid4().hex
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def generous(shared_stack: Stack) -> Iterator[ApiProcess]:
    """An API with the default limits."""
    with ready_api({**shared_stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN},
                   shared_stack.tmp / "api-generous.log") as process:
        yield process


@pytest.fixture()
def strict(shared_stack: Stack) -> Iterator[ApiProcess]:
    """An API allowing 3 writes at once per credential and address and 2 failed authentications, refilling slowly."""
    with ready_api({**shared_stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN,
                   "TIMECREDITS_RATE_WRITES_PER_S": "0.05", "TIMECREDITS_RATE_WRITES_BURST": "3",
                   "TIMECREDITS_RATE_AUTH_FAILURES_PER_MIN": "1", "TIMECREDITS_RATE_AUTH_FAILURES_BURST": "2"},
                   shared_stack.tmp / f"api-strict-{uuid.uuid4().hex[:6]}.log") as process:
        yield process


def _rss(process: ApiProcess) -> int:
    """Resident memory of the API: the supervisor and its serving processes."""
    root = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in (root, *root.children(recursive=True)))


def test_a_declared_length_over_the_cap_is_refused_at_once(generous: ApiProcess) -> None:
    with httpx.Client(base_url=generous.url, timeout=30) as client:
        response = client.post("/v1/tokens", content=b"{" + b" " * (MIB + 10) + b"}",
                               headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert error_code(response) == (413, "payload_too_large")
    assert "1 MiB" in response.json()["error"]["message"]


def test_a_body_under_the_cap_still_reaches_its_route(generous: ApiProcess) -> None:
    api = Api(generous.url, ADMIN_TOKEN)
    try:
        response = api.post("/v1/tokens", ADMIN_TOKEN, {"role": "lead", "label": "x" * 400})
        assert response.status_code == 201, response.text
        assert error_code(api.post("/v1/tokens", ADMIN_TOKEN, content=b"{" * 1000)) == (400, "malformed_json")
    finally:
        api.close()


def test_a_50_mib_chunked_body_is_refused_without_being_read(generous: ApiProcess) -> None:
    before = _rss(generous)
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        piece = b"[" + b"1," * (MIB // 2 - 1)
        for _ in range(50):
            sent += len(piece)
            yield piece

    with httpx.Client(base_url=generous.url, timeout=60) as client:
        # A generator body goes out chunked, with no Content-Length.
        response = client.post("/v1/tokens", content=chunks(),
                               headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert error_code(response) == (413, "payload_too_large")
    grown = _rss(generous) - before
    assert grown < 10 * MIB, f"the API grew by {grown / MIB:.1f} MiB reading a refused body"
    assert generous.wait_answering("/healthz").status_code == 200


def test_writes_over_their_rate_are_refused_with_retry_after(strict: ApiProcess) -> None:
    api = Api(strict.url, ADMIN_TOKEN)
    try:
        for _ in range(3):
            assert api.post("/v1/tokens", ADMIN_TOKEN, {"role": "lead"}).status_code == 201
        refused = api.post("/v1/tokens", ADMIN_TOKEN, {"role": "lead"})
        assert error_code(refused) == (429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1
        assert "try again in" in refused.json()["error"]["message"]
        assert api.get("/v1/tokens", ADMIN_TOKEN).status_code == 200  # reads are not limited
        # The client address has its own bucket, which the three writes emptied too: another credential from
        # the same address is refused as well.
        assert error_code(api.post("/v1/tokens", "tc_" + "y" * 43, {"role": "lead"})) == (429, "rate_limited")
    finally:
        api.close()


def test_failed_authentications_over_their_rate_are_refused_even_with_a_good_token(strict: ApiProcess) -> None:
    api = Api(strict.url, ADMIN_TOKEN)
    try:
        for guess in ("tc_" + "a" * 43, "tc_" + "b" * 43):
            assert error_code(api.get("/v1/tokens", guess)) == (401, "invalid_token")
        refused = api.get("/v1/tokens", "tc_" + "c" * 43)
        assert error_code(refused) == (429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1
        assert error_code(api.get("/v1/tokens", ADMIN_TOKEN)) == (429, "rate_limited")
        assert api.get("/healthz", None).status_code == 200  # outside /v1: liveness still answers
    finally:
        api.close()


def test_the_spreadsheet_upload_may_be_larger_than_a_json_body_and_is_capped_too(generous: ApiProcess) -> None:
    """A 2 MiB sheet reaches the upload page (which then asks the person to sign in); 11 MiB does not."""
    with httpx.Client(base_url=generous.url, timeout=60, follow_redirects=False) as client:
        fits = client.post("/app/import", files={"sheet": ("big.csv", b"x" * (2 * MIB), "text/csv")})
        assert fits.status_code == 303 and fits.headers["location"] == "/app/sign-in"
        too_big = client.post("/app/import", files={"sheet": ("huge.csv", b"x" * (11 * MIB), "text/csv")})
        assert error_code(too_big) == (413, "payload_too_large")
        elsewhere = client.post("/app/pay", files={"sheet": ("big.csv", b"x" * (2 * MIB), "text/csv")})
        assert error_code(elsewhere) == (413, "payload_too_large")
