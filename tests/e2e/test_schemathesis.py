"""Schemathesis against the API's own OpenAPI document, over real HTTP, on a real stack.

`timecredits api` runs as a child process on a fresh database and a real broker (topics of the test's own),
with a real `timecredits worker`. A little data is seeded first through the API (a community organisation, a
partner, one of both kinds, volunteers, an opportunity, approved and pending hours, a booking, tokens) and the
generated path parameters, queries and bodies are steered to those ids half of the time, so that many calls
get past `404` into the code behind. Every operation is a test of its own; every response must:

- not be a server error (`not_a_server_error`: no 5xx at all, so no 503 `broker_unavailable` either: the
  broker is up),
- have a status code the operation documents (`status_code_conformance`),
- conform to the schema documented for that status (`response_schema_conformance`).

Bounded: 25 examples an operation, a fixed seed, derandomized, no example database, no deadline
(Schemathesis 4's own phases: the schema's examples, its coverage cases, then fuzzing, positive and negative).

The tests at the end pin the four API bugs this run found first (an undocumented 400, control characters,
amounts beyond an event's limit and naive start times each gave a 500), now fixed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from tests.e2e.conftest import Stack, free_port
from tests.e2e.stack import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.integration]

ADMIN_TOKEN = "tc_schemathesis_admin_token_of_32_characters"
AREA = "E09000030"
MAX_EXAMPLES = 25
SEED = 20_260_401

@dataclass
class Seeded:
    """Ids that exist, by the parameter names the API uses for them, and tokens."""

    ids: dict[str, list[str]]
    volunteer_token: str
    pending_log: str
    #: A volunteer for the erasure alone, so that the seeded ones the other operations use are never erased.
    erasable: str


@dataclass
class RunningApi:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    seeded: Seeded

    def admin(self) -> httpx.Client:
        """A client without keep-alive: after a 500, uvicorn drops the connection, and a reused one is reset."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=15,
                            limits=httpx.Limits(max_keepalive_connections=0))


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"timecredits api exited with {process.returncode}:\n{log_path.read_text()}"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url}/readyz did not answer 200 within {timeout} s:\n{log_path.read_text()[-4000:]}")


def _seed(url: str) -> Seeded:
    """Registry rows at once (201); hours, an approval and a booking through the worker (202, then applied)."""
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=15)

    def post(path: str, body: dict[str, Any] | None = None, expect: int = 201) -> dict[str, Any]:
        response = admin.post(path, json=body)
        assert response.status_code == expect, (path, response.status_code, response.text)
        return response.json()  # type: ignore[no-any-return]

    def applied(event_id: str) -> None:
        def status() -> bool:
            outcome = admin.get(f"/v1/events/{event_id}").json()
            assert outcome["status"] != "rejected", outcome
            return outcome["status"] == "applied"

        wait_until(status, 90, f"event {event_id} to be applied", interval=0.2)

    post("/v1/organisations", {"id": "st-club", "name": "Schemathesis Club", "area": AREA, "kinds": ["community"]})
    post("/v1/organisations", {"id": "st-lido", "name": "Schemathesis Lido", "area": AREA, "kinds": ["partner"]})
    post("/v1/organisations", {"id": "st-hub", "name": "Both kinds", "area": AREA, "kinds": ["community", "partner"],
                               "auto_approve": True})
    volunteers = [post("/v1/volunteers", {"display_name": f"Volunteer {n}", "area": AREA, "age_band": "25-34",
                                          "consent_stats": True, "org_id": "st-club", "reference": f"ST-{n}"})["id"]
                  for n in (1, 2)]
    for volunteer in volunteers:
        post("/v1/organisations/st-hub/members", {"volunteer_id": volunteer})
    erasable = post("/v1/volunteers", {"display_name": "Volunteer 3", "area": AREA, "consent_stats": False,
                                       "org_id": "st-club"})["id"]
    post("/v1/opportunities", {"id": "st-swim", "partner_id": "st-lido", "title": "Swim", "category": "sport",
                               "cost": "1.00", "area": AREA})
    post("/v1/opportunities", {"id": "st-aqua", "partner_id": "st-lido", "title": "Aqua", "category": "sport",
                               "cost": "1.00", "area": AREA, "capacity": 5,
                               "starts_at": f"{date.today() + timedelta(days=400)}T18:00:00Z",
                               "repeat": {"every": "week", "sessions": 3}})
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    logs = [post("/v1/hours", {"volunteer_id": volunteers[0], "org_id": "st-club", "date": yesterday, "minutes": 60 * n,
                               "activity": f"shift {n}"}, 202)["event_id"] for n in (3, 2, 1)]
    for log in logs:
        applied(log)
    applied(post(f"/v1/hours/{logs[0]}/approve", None, 202)["event_id"])  # st-v1 earns 3.00; the others stay pending
    for role, scope in (("org", {"org_id": "st-club"}), ("org", {"org_id": "st-lido"}), ("lead", {})):
        post("/v1/tokens", {"role": role, **scope})
    volunteer_token = post("/v1/tokens", {"role": "volunteer", "volunteer_id": volunteers[0]})["token"]
    booked = admin.post("/v1/bookings", json={"opportunity_id": "st-swim"},  # the volunteer's own act
                        headers={"Authorization": f"Bearer {volunteer_token}"})
    assert booked.status_code == 202, booked.text
    booking = booked.json()["event_id"]
    applied(booking)
    admin.close()
    return Seeded(
        ids={
            "volunteer_id": volunteers,
            "to_volunteer_id": volunteers[1:],
            "org_id": ["st-club", "st-hub"],
            "partner_id": ["st-lido", "st-hub"],
            "opportunity_id": ["st-swim", "st-aqua-2"],
            "series_id": ["st-aqua"],
            "event_id": [*logs, booking],
        },
        volunteer_token=volunteer_token,
        pending_log=logs[2],
        erasable=erasable,
    )


@pytest.fixture(scope="module")
def running_api(shared_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """`timecredits api` on a free port, with what `shared_stack` made: a fresh database on the primary
    PostgreSQL, the `kafka_bootstrap` broker, a unique TIMECREDITS_TOPIC_PREFIX whose topics it created with
    `ensure_topics(..., prefixed(ALL_TOPICS, prefix))`, and a running worker."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    env = {**os.environ, **shared_stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN}
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "timecredits.cli", "api", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(url, process, log_path)
        served = httpx.get(f"{url}/openapi.json", timeout=10).json()
        assert served == OPENAPI, "the running API serves another OpenAPI document than the tests were made from"
        seeded = _seed(url)
        SEEDED_IDS.update(seeded.ids)
        ERASABLE_IDS.update({"volunteer_id": [seeded.erasable]})
        yield RunningApi(url, process, log_path, seeded)
    finally:
        SEEDED_IDS.clear()
        ERASABLE_IDS.clear()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# The app's own OpenAPI document, built as `timecredits api` builds it (the fixture checks that the running API
# serves exactly this one). It is needed at collection time to make one test an operation; it is loaded from
# the app object because `schemathesis.pytest.from_fixture` fails on pytest 9.2 (it sets `Function._nodeid`,
# which pytest 9.2 no longer has).
OPENAPI = create_app(database_url="postgresql://unused", bootstrap_servers="unused:9092").openapi()
SEEDED_IDS: dict[str, list[str]] = {}
#: What the erasure's path is steered to instead (docs/design.md §5.15): an erased volunteer is refused by every
#: operation after it, which would turn the seeded ones' answers into 401s and 410s for the rest of the run.
ERASABLE_IDS: dict[str, list[str]] = {}
ERASE = ("DELETE", "/v1/volunteers/{volunteer_id}")
schema = schemathesis.openapi.from_dict(OPENAPI, config=SchemathesisConfig.from_dict({
    "seed": SEED,
    "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    "request-timeout": 20,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none", "mode": "all"},
}))


def _steer(value: Any, ids: dict[str, list[str]] = SEEDED_IDS) -> st.SearchStrategy[Any]:
    """The generated value, or (as often) the same with each id parameter set to a seeded id."""
    if not isinstance(value, dict) or not any(key in ids for key in value):
        return st.just(value)
    known = st.fixed_dictionaries({key: st.sampled_from(ids[key]) for key in value if key in ids})
    return st.one_of(st.just(value), known.map(lambda chosen: {**value, **chosen}))


@schema.hook("flatmap_path_parameters")
def _known_path_ids(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy[Any]:
    operation = context.operation
    if (operation.method.upper(), operation.path) == ERASE:
        return _steer(path_parameters, ERASABLE_IDS)
    return _steer(path_parameters)


@schema.hook("flatmap_query")
def _known_query_ids(context: Any, query: Any) -> st.SearchStrategy[Any]:
    return _steer(query)


@schema.hook("flatmap_body")
def _known_body_ids(context: Any, body: Any) -> st.SearchStrategy[Any]:
    return _steer(body)


CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@schema.parametrize()
def test_every_operation_answers_as_documented(case: schemathesis.Case, running_api: RunningApi) -> None:
    # A gift is made by a volunteer (an admin gets 403): send it with the seeded volunteer's token.
    token = running_api.seeded.volunteer_token if case.path == "/v1/gifts" else ADMIN_TOKEN
    case.call_and_validate(base_url=running_api.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


# --- regressions: API bugs the test above found -------------------------------------------------------------------

JSON_WRITES = [(path, method) for path, methods in OPENAPI["paths"].items() for method, operation in methods.items()
               if "requestBody" in operation]


def test_malformed_json_answer_is_documented(running_api: RunningApi) -> None:
    with running_api.admin() as admin:
        for path, method in JSON_WRITES:
            url = path.replace("{event_id}", running_api.seeded.pending_log)
            response = admin.request(method.upper(), url, content=b"\x00", headers={"Content-Type": "application/json"})
            assert response.status_code == 400, (method, path, response.status_code, response.text)
            assert "400" in OPENAPI["paths"][path][method]["responses"], f"{method.upper()} {path}: 400 undocumented"


def test_text_the_ledger_cannot_store_is_refused_with_422(running_api: RunningApi) -> None:
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    requests = [
        ("/v1/organisations", {"id": "st-ctl", "name": "Club\x04", "area": AREA, "kinds": ["community"]}),
        ("/v1/volunteers", {"display_name": "Ann", "seb_detail": "x\x03", "area": AREA, "consent_stats": True}),
        ("/v1/volunteers", {"display_name": "Ann\x00", "area": AREA, "consent_stats": True}),
        ("/v1/opportunities", {"partner_id": "st-lido", "title": "Swim\x1f", "category": "sport", "cost": "1.00",
                               "area": AREA}),
        ("/v1/hours", {"volunteer_id": running_api.seeded.ids["volunteer_id"][0], "org_id": "st-club", "date": yesterday, "minutes": 30,
                       "activity": "shift\x08"}),
        (f"/v1/hours/{running_api.seeded.pending_log}/reject", {"reason": "no\x07"}),
    ]
    with running_api.admin() as admin:
        statuses = {f"{path} {body}": admin.post(path, json=body).status_code for path, body in requests}
    assert set(statuses.values()) == {422}, statuses


def test_amounts_beyond_the_event_limit_are_refused_with_422(running_api: RunningApi) -> None:
    volunteer = {"Authorization": f"Bearer {running_api.seeded.volunteer_token}"}
    with running_api.admin() as admin:
        statuses = {
            "gift": admin.post("/v1/gifts", json={"to_volunteer_id": running_api.seeded.ids["volunteer_id"][1],
                                                        "amount": "1000000.01"},
                               headers=volunteer).status_code,
            "redemption": admin.post("/v1/redemptions", json={"volunteer_id": running_api.seeded.ids["volunteer_id"][0],
                                                              "partner_id": "st-lido",
                                                              "amount": "2000000"}).status_code,
            "opportunity": admin.post("/v1/opportunities", json={"partner_id": "st-lido", "title": "Dear",
                                                                 "category": "sport", "cost": "5000000",
                                                                 "area": AREA}).status_code,
        }
    assert set(statuses.values()) == {422}, statuses


def test_opportunity_start_times_the_events_refuse_are_refused_with_422(running_api: RunningApi) -> None:
    with running_api.admin() as admin:
        statuses = {
            starts_at: admin.post("/v1/opportunities", json={"partner_id": "st-lido", "title": "Swim", "area": AREA,
                                                             "category": "sport", "cost": "1.00",
                                                             "starts_at": starts_at}).status_code
            for starts_at in ("2026-12-01T10:00:00", "0001-01-01T00:00:00+01:00")
        }
    assert set(statuses.values()) == {422}, statuses
