"""Tokens over real HTTP: lifetimes, listing without secrets, revocation by whoever may, refusals by code
(docs/design.md §5.1), and the CLI's `tokens list` and `tokens revoke`."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.e2e.api_stack import Api, error_code, ready_api
from tests.e2e.conftest import Stack

pytestmark = [pytest.mark.broker, pytest.mark.integration]

ADMIN_TOKEN = "tc_tokens_admin_" + uuid.uuid4().hex
AREA = "E09000030"
SECRET_FIELDS = {"token", "token_sha256", "digest"}


@pytest.fixture(scope="module")
def api(shared_stack: Stack) -> Iterator[Api]:
    with ready_api({**shared_stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN},
                   shared_stack.tmp / "api-tokens.log") as process:
        client = Api(process.url, ADMIN_TOKEN)
        try:
            yield client
        finally:
            client.close()


@dataclass
class Holders:
    """Tokens of every role, for two organisations and two volunteers: (token, id) each."""

    org_a: tuple[str, str]
    org_a2: tuple[str, str]
    org_b: tuple[str, str]
    ana: tuple[str, str]
    ben: tuple[str, str]
    lead: tuple[str, str]
    lead2: tuple[str, str]


def _create(api: Api, body: dict[str, object]) -> tuple[str, str]:
    response = api.post("/v1/tokens", api.admin, body)
    assert response.status_code == 201, response.text
    return response.json()["token"], response.json()["id"]


@pytest.fixture(scope="module")
def holders(api: Api) -> Holders:
    suffix = uuid.uuid4().hex[:6]
    org_a, org_b = f"tk-a-{suffix}", f"tk-b-{suffix}"
    api.organisation(org_a, ["community"], AREA)
    api.organisation(org_b, ["community"], AREA)
    ana, ben = api.volunteer("Ana", AREA), api.volunteer("Ben", AREA)
    return Holders(
        org_a=_create(api, {"role": "org", "org_id": org_a, "label": "front desk"}),
        org_a2=_create(api, {"role": "org", "org_id": org_a, "label": "coordinator"}),
        org_b=_create(api, {"role": "org", "org_id": org_b}),
        ana=_create(api, {"role": "volunteer", "volunteer_id": ana}),
        ben=_create(api, {"role": "volunteer", "volunteer_id": ben}),
        lead=_create(api, {"role": "lead", "label": "programme lead"}),
        lead2=_create(api, {"role": "lead"}),
    )


def _listed(api: Api, token: str) -> dict[str, dict[str, object]]:
    response = api.get("/v1/tokens", token)
    assert response.status_code == 200, response.text
    rows = response.json()["tokens"]
    for row in rows:
        assert not SECRET_FIELDS & set(row), row
        assert set(row) == {"id", "role", "org_id", "volunteer_id", "label", "created_at", "last_used_at",
                            "expires_at", "revoked_at"}, row
    return {row["id"]: row for row in rows}


def test_a_token_lasts_365_days_by_default_or_as_many_as_asked(api: Api, holders: Holders) -> None:
    response = api.post("/v1/tokens", api.admin, {"role": "lead"})
    assert response.status_code == 201, response.text
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=365))) < timedelta(minutes=5)
    response = api.post("/v1/tokens", api.admin, {"role": "lead", "expires_in_days": 7})
    assert response.status_code == 201, response.text
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=5)
    assert _listed(api, api.admin)[response.json()["id"]]["expires_at"] == response.json()["expires_at"]


@pytest.mark.parametrize("days", [0, 3651, -1])
def test_a_lifetime_out_of_bounds_is_refused(api: Api, days: int) -> None:
    response = api.post("/v1/tokens", api.admin, {"role": "lead", "expires_in_days": days})
    assert error_code(response) == (422, "invalid_request")


def test_only_admin_creates_tokens(api: Api, holders: Holders) -> None:
    for token in (holders.org_a[0], holders.ana[0], holders.lead[0]):
        assert error_code(api.post("/v1/tokens", token, {"role": "lead"})) == (403, "forbidden")
    assert error_code(api.post("/v1/tokens", None, {"role": "lead"})) == (401, "unauthenticated")


def test_unknown_revoked_and_expired_tokens_are_refused_each_with_its_code(api: Api, shared_stack: Stack) -> None:
    assert error_code(api.get("/v1/tokens", "tc_" + "x" * 43)) == (401, "invalid_token")
    revoked, revoked_id = _create(api, {"role": "lead"})
    assert api.get("/v1/tokens", revoked).status_code == 200
    assert api.request("DELETE", f"/v1/tokens/{revoked_id}", api.admin).status_code == 204
    expired, expired_id = _create(api, {"role": "lead"})
    with shared_stack.engine.begin() as conn:
        conn.execute(text("UPDATE api_tokens SET expires_at = now() - interval '1 minute' WHERE id = :id"),
                     {"id": expired_id})
    _refused_within_the_cache_time(api, revoked, "token_revoked")
    _refused_within_the_cache_time(api, expired, "token_expired")
    body = api.get("/v1/tokens", expired).json()
    assert "expired" in body["error"]["message"]


def _refused_within_the_cache_time(api: Api, token: str, code: str) -> None:
    """Refused with `code` once the one-second cache has let go (polled, with a deadline as a hang guard)."""
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while True:
        response = api.get("/v1/tokens", token)
        if response.status_code == 401:
            assert error_code(response) == (401, code)
            return
        assert datetime.now(UTC) < deadline, f"{token[:6]}… still accepted"


def test_each_role_lists_only_the_tokens_it_holds_or_its_organisation_holds(api: Api, holders: Holders) -> None:
    everything = _listed(api, api.admin)
    assert {h[1] for h in vars(holders).values()} <= set(everything)
    assert everything[holders.org_a[1]]["label"] == "front desk"
    assert everything[holders.ana[1]]["volunteer_id"] and everything[holders.ana[1]]["role"] == "volunteer"

    assert set(_listed(api, holders.org_a[0])) == {holders.org_a[1], holders.org_a2[1]}
    assert set(_listed(api, holders.org_a2[0])) == {holders.org_a[1], holders.org_a2[1]}
    assert set(_listed(api, holders.org_b[0])) == {holders.org_b[1]}
    assert set(_listed(api, holders.ana[0])) == {holders.ana[1]}
    assert set(_listed(api, holders.ben[0])) == {holders.ben[1]}
    assert set(_listed(api, holders.lead[0])) == {holders.lead[1]}
    assert error_code(api.get("/v1/tokens", None)) == (401, "unauthenticated")


def test_last_used_is_recorded(api: Api, holders: Holders) -> None:
    assert api.get("/v1/tokens", holders.lead2[0]).status_code == 200
    row = _listed(api, api.admin)[holders.lead2[1]]
    assert row["last_used_at"] is not None
    assert datetime.fromisoformat(str(row["last_used_at"])) > datetime.now(UTC) - timedelta(minutes=2)


def test_revocation_by_who_may_and_another_s_token_is_not_found(api: Api, holders: Holders) -> None:
    # Another's token answers as an unknown one does: its existence is not revealed (docs/design.md §5.1).
    for caller, victim in ((holders.ana, holders.ben), (holders.org_b, holders.org_a), (holders.lead, holders.lead2),
                           (holders.ana, holders.org_a), (holders.org_a, holders.ana)):
        response = api.request("DELETE", f"/v1/tokens/{victim[1]}", caller[0])
        assert error_code(response) == (404, "unknown_token"), (caller, victim)
        assert api.get("/v1/tokens", victim[0]).status_code == 200  # still works
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        assert error_code(api.request("DELETE", f"/v1/tokens/{unknown}", api.admin)) == (404, "unknown_token")
    assert error_code(api.request("DELETE", f"/v1/tokens/{holders.ben[1]}", None)) == (401, "unauthenticated")

    own, own_id = _create(api, {"role": "volunteer", "volunteer_id": _listed(api, holders.ana[0])[holders.ana[1]]
                                ["volunteer_id"]})
    assert api.request("DELETE", f"/v1/tokens/{own_id}", own).status_code == 204  # a volunteer revokes their own
    _refused_within_the_cache_time(api, own, "token_revoked")
    assert api.request("DELETE", f"/v1/tokens/{holders.org_a2[1]}", holders.org_a[0]).status_code == 204
    _refused_within_the_cache_time(api, holders.org_a2[0], "token_revoked")
    assert _listed(api, holders.org_a[0])[holders.org_a2[1]]["revoked_at"] is not None
    assert api.request("DELETE", f"/v1/tokens/{holders.lead2[1]}", api.admin).status_code == 204
    assert api.request("DELETE", f"/v1/tokens/{holders.lead2[1]}", api.admin).status_code == 204  # again: no change
    _refused_within_the_cache_time(api, holders.lead2[0], "token_revoked")


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "timecredits.cli", "tokens", *args], capture_output=True,
                          text=True, env={**os.environ, **stack.env()}, timeout=120)


def test_the_cli_creates_lists_and_revokes(api: Api, shared_stack: Stack) -> None:
    created = _cli(shared_stack, "create", "--role", "lead", "--label", "cli lead", "--expires-in-days", "30")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert api.get("/v1/tokens", token).status_code == 200
    token_id = next(iter(_listed(api, token)))
    listed = _cli(shared_stack, "list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith(token_id))
    assert "lead" in line and "cli lead" in line and "expires" in line and token not in listed.stdout
    revoked = _cli(shared_stack, "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    _refused_within_the_cache_time(api, token, "token_revoked")
    assert "revoked" in next(line for line in _cli(shared_stack, "list").stdout.splitlines()
                             if line.startswith(token_id))
    assert _cli(shared_stack, "revoke", str(uuid.uuid4())).returncode == 1
    assert _cli(shared_stack, "create", "--role", "lead", "--expires-in-days", "0").returncode == 2
