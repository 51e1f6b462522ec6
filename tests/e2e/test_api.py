"""The HTTP API over real HTTP: a `timecredits api` process and a `timecredits worker` process on a fresh database,
a real broker and topics of their own (docs/design.md §2, §5). No TestClient, no mocks.

One API and one worker serve the module; each test uses ids of its own. The last test checks that every path of
the OpenAPI document was answered with a success by the API process during the module (from its own metrics),
so an endpoint added without a test fails it.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openpyxl import load_workbook
from sqlalchemy import text

from infra.embedded import EmbeddedBroker
from ledger.actors import admin_actor, org_actor
from producers.kafka import ALL_TOPICS, ensure_topics, prefixed
from tests.e2e.api_stack import AMOUNT, Api, ApiProcess, error_code, ready_api
from tests.e2e.conftest import PARTITIONS, Stack, free_port
from stats.suppression import additive_figures
from tests.e2e.stack import topic_records, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.integration]

ADMIN_TOKEN = "tc_e2e_admin_" + uuid.uuid4().hex
AREA = "E09000030"
OTHER_AREA = "E09000012"
FACE = "hrs-face"  # the name of a volunteer for requests refused on their face
TODAY = datetime.now(UTC).date()
YESTERDAY = (TODAY - timedelta(days=1)).isoformat()


# --- the stack ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_process(shared_stack: Stack) -> Iterator[ApiProcess]:
    """`timecredits api` next to the module's worker, ready (database and broker reachable)."""
    with ready_api({**shared_stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN},
                   shared_stack.tmp / "api.log") as process:
        yield process


@dataclass
class SideApis:
    """APIs away from the module's broker, started with the module so their start-up overlaps the other tests."""

    lonely: ApiProcess  # on a broker of its own, stopped by a test
    lonely_broker: EmbeddedBroker
    brokerless: ApiProcess  # pointed at a port where nothing listens


@pytest.fixture(scope="module", autouse=True)
def side_apis(shared_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SideApis]:
    tmp = tmp_path_factory.mktemp("side-apis")
    env = {**shared_stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN}
    brokerless = ApiProcess({**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}, tmp / "brokerless.log")
    broker = EmbeddedBroker(tmp / "broker")
    lonely: ApiProcess | None = None
    try:
        broker.start()
        ensure_topics(broker.bootstrap_servers, PARTITIONS, prefixed(ALL_TOPICS, shared_stack.prefix))
        lonely = ApiProcess({**env, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}, tmp / "lonely.log")
        yield SideApis(lonely, broker, brokerless)
    finally:
        for process in (brokerless, lonely):
            if process is not None:
                process.stop(timeout=3)  # its broker is gone: do not wait long for the producer to flush
        broker.stop()


@pytest.fixture(scope="module")
def api(api_process: ApiProcess) -> Iterator[Api]:
    client = Api(api_process.url, ADMIN_TOKEN)
    try:
        yield client
    finally:
        client.close()


@dataclass
class World:
    """Organisations, tokens and opportunities every test may use; each test registers volunteers of its own."""

    api: Api
    tokens: dict[str, str] = field(default_factory=dict)
    #: A volunteer for requests refused on their face.
    face: str = ""

    CLUB = "club"  # community, hours approved by hand
    AUTO = "auto"  # community, hours approved automatically
    LIDO = "lido"  # partner
    ARTS = "arts"  # partner
    HUB = "hub"  # community and partner
    SWIM = "lido-swim"  # at LIDO, 2.00
    CLASS = "arts-class"  # at ARTS, 1.50

    def org(self, org_id: str) -> str:
        return self.tokens[org_id]

    @property
    def lead(self) -> str:
        return self.tokens["lead"]

    #: The community organisations every test's volunteers are members of.
    COMMUNITY = (CLUB, AUTO, HUB)

    def volunteer(self, name: str, member_of: Sequence[str] = COMMUNITY) -> tuple[str, str]:
        """A new volunteer (a member of `member_of`) and a token of theirs."""
        volunteer_id = self.api.volunteer(name, AREA, member_of=member_of)
        return volunteer_id, self.api.token("volunteer", volunteer_id=volunteer_id)

    def spend_code(self, volunteer_id: str, token: str, partner_id: str, max_amount: str = "10") -> str:
        """The digits of a new spend code the volunteer made for `partner_id`."""
        response = self.api.post(f"/v1/volunteers/{volunteer_id}/spend-codes", token,
                                 {"partner_id": partner_id, "max_amount": max_amount})
        assert response.status_code == 201, response.text
        return str(response.json()["code"])

    def earn(self, volunteer_id: str, minutes: int) -> dict[str, Any]:
        """Hours with the auto-approving organisation, applied: credits at once."""
        response = self.api.post("/v1/hours", self.org(self.AUTO), self.hours(volunteer_id, self.AUTO, minutes))
        return self.api.applied(self.api.accepted(response), self.org(self.AUTO))

    @staticmethod
    def hours(volunteer_id: str, org_id: str, minutes: int = 60, **extra: Any) -> dict[str, Any]:
        return {"volunteer_id": volunteer_id, "org_id": org_id, "date": YESTERDAY, "minutes": minutes,
                "activity": "Food bank", **extra}


@pytest.fixture(scope="module")
def world(api: Api) -> World:
    w = World(api)
    api.organisation(World.CLUB, ["community"], AREA)
    api.organisation(World.AUTO, ["community"], AREA, auto_approve=True)
    api.organisation(World.LIDO, ["partner"], AREA)
    api.organisation(World.ARTS, ["partner"], OTHER_AREA)
    api.organisation(World.HUB, ["community", "partner"], OTHER_AREA)
    for org in (World.CLUB, World.AUTO, World.LIDO, World.ARTS, World.HUB):
        w.tokens[org] = api.token("org", org_id=org)
    w.tokens["lead"] = api.token("lead")
    w.face = api.volunteer(FACE, AREA, member_of=World.COMMUNITY)
    for opportunity, partner, cost, category, area in ((World.SWIM, World.LIDO, "2", "sport", AREA),
                                                       (World.CLASS, World.ARTS, "1.5", "course", OTHER_AREA)):
        response = api.post("/v1/opportunities", w.org(partner), {
            "id": opportunity, "title": opportunity, "category": category, "cost": cost, "area": area,
            "capacity": 10, "starts_at": "2027-01-05T10:00:00Z"})
        assert response.status_code == 201, response.text
    return w


def expect(response: httpx.Response, status: int, code: str) -> None:
    assert error_code(response) == (status, code), response.text


# --- health, readiness, metrics, the document --------------------------------------------------------------------


def test_health_readiness_and_the_openapi_document(api: Api) -> None:
    assert api.get("/healthz", None).json() == {"status": "ok"}
    ready = api.get("/readyz", None)
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "database": True, "broker": True}
    document = api.get("/openapi.json", None)
    assert document.status_code == 200
    assert "/v1/hours" in document.json()["paths"]


def test_metrics_count_requests_by_route_template(api: Api, world: World) -> None:
    volunteer_id, token = world.volunteer("metrics-vera")
    assert api.get(f"/v1/volunteers/{volunteer_id}/balance", token).status_code == 200
    assert api.get("/no/such/path", None).status_code == 404
    response = api.get("/metrics", None)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = _request_samples(response.text)
    assert samples[("GET", "/v1/volunteers/{volunteer_id}/balance", "200")] >= 1  # the template, not the raw path
    assert not any(volunteer_id in route for _, route, _ in samples)
    assert samples[("GET", "unmatched", "404")] >= 1
    assert "timecredits_http_request_seconds_bucket{" in response.text


# --- authentication ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/organisations"), ("POST", "/v1/hours"), ("GET", "/v1/volunteers/someone/balance"),
    ("GET", "/v1/events/00000000-0000-4000-8000-000000000001"), ("POST", "/v1/gifts"), ("GET", "/v1/opportunities"),
])
def test_a_token_is_needed_and_must_be_known(api: Api, method: str, path: str) -> None:
    expect(api.request(method, path, None, {}), 401, "unauthenticated")
    expect(api.request(method, path, "tc_not-a-token", {}), 401, "invalid_token")
    basic = api.http.request(method, path, json={}, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    expect(basic, 401, "unauthenticated")


# --- organisations, volunteers, tokens ---------------------------------------------------------------------------


def test_organisations_are_created_by_the_admin_and_listed_to_anyone_signed_in(api: Api, world: World) -> None:
    body = {"id": "org-new", "name": "  Riverside Allotments ", "area": AREA, "kinds": ["partner", "community"],
            "auto_approve": True}
    created = api.post("/v1/organisations", api.admin, body)
    assert created.status_code == 201, created.text
    assert created.json() == {"id": "org-new", "name": "Riverside Allotments", "area": AREA,
                              "kinds": ["community", "partner"], "auto_approve": True}
    expect(api.post("/v1/organisations", api.admin, body), 409, "organisation_exists")

    _, volunteer_token = world.volunteer("org-vic")
    listed = api.get("/v1/organisations", volunteer_token)
    assert listed.status_code == 200
    ids = [o["id"] for o in listed.json()]
    assert ids == sorted(ids) and {"org-new", World.CLUB, World.LIDO} <= set(ids)
    assert next(o for o in listed.json() if o["id"] == World.LIDO) == {
        "id": World.LIDO, "name": "Org lido", "area": AREA, "kinds": ["partner"], "auto_approve": False}

    for token in (world.org(World.CLUB), world.lead, volunteer_token):
        expect(api.post("/v1/organisations", token, {**body, "id": "org-nope"}), 403, "forbidden")
    for bad in ({"area": "London"}, {"kinds": []}, {"kinds": ["shop"]}, {"id": "has space"}, {"name": ""},
                {"colour": "red"}):
        expect(api.post("/v1/organisations", api.admin, {**body, "id": "org-bad", **bad}), 422, "invalid_request")
    expect(api.post("/v1/organisations", api.admin, content=b'{"id": "org-x", '), 400, "malformed_json")


def test_volunteers_get_ids_made_by_the_server_and_join_the_organisation_that_registers_them(
        api: Api, world: World) -> None:
    body = {"display_name": "Ana Lopez", "email": "ana@example.org", "area": AREA, "age_band": "25-34",
            "seb": "intermediate", "consent_stats": True}
    for chosen in ("reg-ana", "ana@example.org", "v-0123456789ab"):
        expect(api.post("/v1/volunteers", api.admin, {**body, "id": chosen}), 422, "volunteer_id_chosen_by_server")
        expect(api.post("/v1/volunteers", world.org(World.CLUB), {**body, "id": chosen}), 422,
               "volunteer_id_chosen_by_server")

    by_org = api.post("/v1/volunteers", world.org(World.CLUB), {**body, "reference": "CLUB-0007"})
    assert by_org.status_code == 201, by_org.text
    generated = by_org.json()["id"]
    assert re.fullmatch(r"v-[0-9a-f]{12}", generated), generated
    assert "ana" not in generated.lower() and "lopez" not in generated.lower()
    by_admin = api.post("/v1/volunteers", api.admin, body).json()["id"]
    assert re.fullmatch(r"v-[0-9a-f]{12}", by_admin) and by_admin != generated
    # Registered by the club: its member, under its reference; registered by the admin alone: nobody's member.
    members = api.get(f"/v1/organisations/{World.CLUB}/members", world.org(World.CLUB)).json()
    assert {"volunteer_id": generated, "status": "member", "reference": "CLUB-0007"}.items() <= next(
        m for m in members if m["volunteer_id"] == generated).items()
    assert by_admin not in {m["volunteer_id"] for m in members}
    assert api.get(f"/v1/volunteers/{generated}/balance", world.org(World.CLUB)).json()["balance"] == "0.00"
    expect(api.get(f"/v1/volunteers/{by_admin}/balance", world.org(World.CLUB)), 403, "not_a_member")
    # The admin registers a volunteer into an organisation by naming it; an organisation only into itself.
    into_auto = api.post("/v1/volunteers", api.admin, {**body, "org_id": World.AUTO}).json()["id"]
    assert api.get(f"/v1/volunteers/{into_auto}/balance", world.org(World.AUTO)).status_code == 200
    expect(api.post("/v1/volunteers", world.org(World.CLUB), {**body, "org_id": World.AUTO}), 403, "forbidden")
    expect(api.post("/v1/volunteers", api.admin, {**body, "org_id": "no-such-org"}), 404, "unknown_organisation")
    expect(api.post("/v1/volunteers", api.admin, {**body, "reference": "X-1"}), 422, "invalid_request")
    # One reference names one volunteer within an organisation.
    expect(api.post("/v1/volunteers", world.org(World.CLUB), {**body, "reference": "CLUB-0007"}), 409,
           "reference_taken")

    _, token = world.volunteer("reg-vic")
    for who in (world.lead, token):
        expect(api.post("/v1/volunteers", who, body), 403, "forbidden")
    for bad in ({"area": "E0900003"}, {"age_band": "30"}, {"seb": "rich"}, {"email": "no-at-sign"},
                {"consent_stats": None}, {"display_name": ""}, {"reference": "bad\nline"}):
        expect(api.post("/v1/volunteers", api.admin, {**body, **bad}), 422, "invalid_request")


def test_tokens_are_made_by_the_admin_for_a_scope_that_exists(api: Api, world: World) -> None:
    volunteer_id, volunteer_token = world.volunteer("tok-vera")
    made = api.post("/v1/tokens", api.admin, {"role": "org", "org_id": World.CLUB, "label": "front desk"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["token"].startswith("tc_") and body["role"] == "org" and body["org_id"] == World.CLUB
    assert body["volunteer_id"] is None and uuid.UUID(body["id"])
    assert api.get("/v1/organisations", body["token"]).status_code == 200
    for role in ("admin", "lead"):
        assert api.post("/v1/tokens", api.admin, {"role": role}).status_code == 201

    new_admin = api.token("admin")
    assert api.post("/v1/tokens", new_admin, {"role": "volunteer", "volunteer_id": volunteer_id}).status_code == 201

    for scope in ({"role": "org"}, {"role": "volunteer"}, {"role": "org", "volunteer_id": volunteer_id},
                  {"role": "lead", "org_id": World.CLUB}, {"role": "admin", "volunteer_id": volunteer_id},
                  {"role": "volunteer", "volunteer_id": volunteer_id, "org_id": World.CLUB}):
        expect(api.post("/v1/tokens", api.admin, scope), 422, "invalid_scope")
    expect(api.post("/v1/tokens", api.admin, {"role": "root"}), 422, "invalid_request")
    expect(api.post("/v1/tokens", api.admin, {"role": "org", "org_id": "nowhere"}), 404, "unknown_organisation")
    expect(api.post("/v1/tokens", api.admin, {"role": "volunteer", "volunteer_id": "nobody"}), 404, "unknown_volunteer")
    for token in (world.org(World.CLUB), world.lead, volunteer_token):
        expect(api.post("/v1/tokens", token, {"role": "admin"}), 403, "forbidden")


# --- opportunities -----------------------------------------------------------------------------------------------


def test_partners_list_opportunities_that_anyone_signed_in_can_browse(api: Api, world: World) -> None:
    lido = world.org(World.LIDO)
    body = {"title": "Guided museum tour", "category": "culture", "cost": "1.5", "area": AREA}
    generated = api.post("/v1/opportunities", lido, body)
    assert generated.status_code == 201, generated.text
    opportunity = generated.json()
    assert opportunity["partner_id"] == World.LIDO and opportunity["cost"] == "1.50"
    assert opportunity["capacity"] is None and opportunity["starts_at"] is None and opportunity["id"]

    named = api.post("/v1/opportunities", api.admin, {**body, "id": "opp-gym", "partner_id": World.HUB,
                                                      "category": "sport", "cost": "3", "capacity": 12,
                                                      "area": OTHER_AREA, "starts_at": "2027-02-01T09:30:00+01:00"})
    assert named.status_code == 201, named.text
    assert named.json() == {"id": "opp-gym", "partner_id": World.HUB, "title": "Guided museum tour",
                            "category": "sport", "cost": "3.00", "capacity": 12, "area": OTHER_AREA,
                            "starts_at": "2027-02-01T08:30:00Z", "series_id": None, "sessions": []}
    expect(api.post("/v1/opportunities", world.org(World.HUB), {**body, "id": "opp-gym"}), 409, "opportunity_exists")

    expect(api.post("/v1/opportunities", lido, {**body, "partner_id": World.ARTS}), 403, "forbidden")
    expect(api.post("/v1/opportunities", world.org(World.CLUB), body), 422, "not_a_partner")
    expect(api.post("/v1/opportunities", api.admin, {**body, "partner_id": "nowhere"}), 404, "unknown_organisation")
    expect(api.post("/v1/opportunities", api.admin, body), 422, "invalid_request")  # whose opportunity?
    expect(api.post("/v1/opportunities", lido, {**body, "cost": "0.00"}), 422, "invalid_amount")
    for bad in ({"cost": "1.005"}, {"cost": "-1"}, {"cost": 1.5}, {"category": "party"}, {"capacity": 0},
                {"area": "X"}):
        expect(api.post("/v1/opportunities", lido, {**body, **bad}), 422, "invalid_request")
    _, volunteer_token = world.volunteer("opp-vic")
    for token in (world.lead, volunteer_token):
        expect(api.post("/v1/opportunities", token, body), 403, "forbidden")

    every = api.get("/v1/opportunities", volunteer_token)
    assert every.status_code == 200
    assert {opportunity["id"], "opp-gym", World.SWIM, World.CLASS} <= {o["id"] for o in every.json()}
    assert all(AMOUNT.match(o["cost"]) for o in every.json())

    def ids(**params: Any) -> set[str]:
        response = api.get("/v1/opportunities", world.lead, params=params)
        assert response.status_code == 200, response.text
        return {o["id"] for o in response.json()}

    assert ids(category="sport", area=OTHER_AREA) == {"opp-gym"}
    assert ids(partner_id=World.ARTS) == {World.CLASS}
    assert ids(partner_id=World.LIDO, category="sport") == {World.SWIM}
    assert ids(category="work_experience") == set()
    assert len(ids(limit=1)) == 1
    for params in ({"area": "London"}, {"category": "party"}, {"limit": 0}, {"partner_id": "a:b"}):
        expect(api.get("/v1/opportunities", world.lead, params=params), 422, "invalid_request")


def _listing_written(stack: Stack, opportunity_id: str) -> tuple[Any, ...]:
    """When the opportunity's row was last written, and how many of its partner's listing events were refused."""
    with stack.engine.connect() as conn:
        return tuple(conn.execute(text(
            "SELECT o.updated_at, (SELECT count(*) FROM rejections r JOIN event_requests q USING (event_id) "
            "WHERE q.type = 'OpportunityListed' AND q.actor = :a) FROM opportunities o WHERE o.id = :o"),
            {"a": org_actor(World.LIDO), "o": opportunity_id}).one())


def test_a_partner_edits_the_title_capacity_and_start_of_its_own_opportunities(
        shared_stack: Stack, api: Api, world: World) -> None:
    lido = world.org(World.LIDO)
    with shared_stack.engine.connect() as conn:
        started = conn.execute(text("SELECT now()")).scalar_one()
    created = api.post("/v1/opportunities", lido, {"title": "Lane swim", "category": "sport", "cost": "2",
                                                   "capacity": 8, "area": AREA})
    assert created.status_code == 201, created.text
    listed = created.json()
    path = f"/v1/opportunities/{listed['id']}"

    edited = api.request("PATCH", path, lido, {"title": "Early lane swim", "starts_at": "2027-03-01T07:00:00Z"})
    assert edited.status_code == 200, edited.text
    assert edited.json() == {**listed, "title": "Early lane swim", "starts_at": "2027-03-01T07:00:00Z"}
    unlimited = api.request("PATCH", path, api.admin, {"capacity": None})  # null: no limit; the rest stays
    assert unlimited.status_code == 200 and unlimited.json()["capacity"] is None
    # The worker writes each listing again from its OpportunityListed event (an upsert), in order: the last wins.
    # Its write is later than the API's transaction of the last edit, whose time the edit's request row carries
    # (the row's own time may already be the worker's, should the worker be quick).
    with shared_stack.engine.connect() as conn:
        last_edit = conn.execute(text("SELECT max(created_at) FROM event_requests WHERE type = 'OpportunityListed' "
                                      "AND created_at >= :started"), {"started": started}).scalar_one()

    def upserted() -> bool:
        with shared_stack.engine.connect() as conn:
            row = conn.execute(text("SELECT updated_at, capacity FROM opportunities WHERE id = :o"),
                               {"o": listed["id"]}).one()
        return bool(row.updated_at > last_edit and row.capacity is None)

    wait_until(upserted, 60, "the worker's upsert of the last edit")
    assert _listing_written(shared_stack, listed["id"])[1] == 0
    assert unlimited.json()["title"] == "Early lane swim" and unlimited.json()["cost"] == "2.00"
    every = api.get("/v1/opportunities", world.lead, params={"partner_id": World.LIDO})
    assert {**next(o for o in every.json() if o["id"] == listed["id"]), "sessions": []} == unlimited.json()

    expect(api.request("PATCH", path, world.org(World.HUB), {"title": "Mine now"}), 403, "forbidden")
    _, volunteer_token = world.volunteer("opp-edit-vic")
    for token in (world.lead, volunteer_token):
        expect(api.request("PATCH", path, token, {"title": "Mine now"}), 403, "forbidden")
    expect(api.request("PATCH", "/v1/opportunities/opp-nowhere", lido, {"title": "x"}), 404, "unknown_opportunity")
    for bad in ({"cost": "1"}, {"category": "course"}, {"partner_id": World.HUB}, {"capacity": 0}, {"title": None},
                {"title": ""}, {"starts_at": "tomorrow"}):
        expect(api.request("PATCH", path, lido, bad), 422, "invalid_request")
    assert api.get("/v1/opportunities", world.lead, params={"partner_id": World.LIDO}).json() == every.json()


def test_a_partner_lists_a_weekly_class_whose_sessions_are_booked_one_by_one(api: Api, world: World) -> None:
    """docs/design.md §5.13: a series is one opportunity a session, each with its own id, start and places."""
    lido = world.org(World.LIDO)
    first = (datetime.now(UTC) + timedelta(days=10)).replace(hour=9, minute=0, second=0, microsecond=0)
    body = {"id": "lido-aqua", "title": "Aqua fit", "category": "sport", "cost": "1", "capacity": 1, "area": AREA,
            "starts_at": first.isoformat(), "repeat": {"every": "week", "sessions": 4}}
    created = api.post("/v1/opportunities", lido, body)
    assert created.status_code == 201, created.text
    series = created.json()
    ids = [f"lido-aqua-{n}" for n in (1, 2, 3, 4)]
    assert (series["id"], series["series_id"]) == ("lido-aqua-1", "lido-aqua")
    assert [s["id"] for s in series["sessions"]] == ids
    starts = [datetime.fromisoformat(s["starts_at"]) for s in series["sessions"]]
    assert starts[0] == first and all(timedelta(days=6, hours=23) <= b - a <= timedelta(days=7, hours=1)
                                      for a, b in zip(starts, starts[1:], strict=False))

    # Anyone signed in sees each session with its date, and one session with its series.
    _, vic = world.volunteer("series-vic")
    listed = api.get("/v1/opportunities", vic, params={"series_id": "lido-aqua"})
    assert listed.status_code == 200, listed.text
    assert [(o["id"], o["starts_at"], o["capacity"], o["title"]) for o in listed.json()] == [
        (s["id"], s["starts_at"], 1, "Aqua fit") for s in series["sessions"]]
    second = api.get("/v1/opportunities/lido-aqua-2", world.lead)
    assert second.status_code == 200, second.text
    assert second.json()["series_id"] == "lido-aqua" and second.json()["sessions"] == series["sessions"]
    lone = api.get(f"/v1/opportunities/{World.SWIM}", vic).json()
    assert (lone["series_id"], lone["sessions"]) == (None, [])
    expect(api.get("/v1/opportunities/opp-nowhere", vic), 404, "unknown_opportunity")
    expect(api.get("/v1/opportunities/lido-aqua-2", None), 401, "unauthenticated")

    # Editing one session edits that session only.
    edited = api.request("PATCH", "/v1/opportunities/lido-aqua-4", lido, {"capacity": 3})
    assert edited.status_code == 200, edited.text
    assert [o["capacity"] for o in api.get("/v1/opportunities", vic, params={"series_id": "lido-aqua"}).json()] == [
        1, 1, 1, 3]

    # One place a session: session 2 full for a second volunteer, who books session 3.
    ana, ana_token = world.volunteer("series-ana")
    ben, ben_token = world.volunteer("series-ben")
    for volunteer in (ana, ben):
        world.earn(volunteer, 120)
    api.applied(api.accepted(api.post("/v1/bookings", ana_token, {"opportunity_id": "lido-aqua-2"})), ana_token)
    expect(api.post("/v1/bookings", ben_token, {"opportunity_id": "lido-aqua-2"}), 409, "fully_booked")
    api.applied(api.accepted(api.post("/v1/bookings", ben_token, {"opportunity_id": "lido-aqua-3"})), ben_token)
    assert api.balance(ben, ben_token)["held"] == "1.00"

    # The admin lists for a partner; others may not; the same series twice is refused.
    by_admin = api.post("/v1/opportunities", api.admin, {**body, "id": None, "partner_id": World.HUB})
    assert by_admin.status_code == 201, by_admin.text
    assert len(by_admin.json()["sessions"]) == 4 and by_admin.json()["partner_id"] == World.HUB
    assert by_admin.json()["series_id"].startswith("ser-")
    expect(api.post("/v1/opportunities", lido, body), 409, "opportunity_exists")
    expect(api.post("/v1/opportunities", lido, {**body, "id": "lido-aqua-b", "partner_id": World.ARTS}), 403,
           "forbidden")
    expect(api.post("/v1/opportunities", world.org(World.CLUB), {**body, "id": "club-aqua"}), 422, "not_a_partner")
    for token in (world.lead, vic):
        expect(api.post("/v1/opportunities", token, {**body, "id": "lido-aqua-c"}), 403, "forbidden")

    # Each bad repeat, refused with a code and nothing listed.
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for bad, code in (({"repeat": {"every": "month", "sessions": 4}}, "invalid_request"),
                      ({"repeat": {"every": "week", "sessions": 1}}, "invalid_request"),
                      ({"repeat": {"every": "week", "sessions": 53}}, "invalid_request"),
                      ({"repeat": {"every": "week", "sessions": "4"}}, "invalid_request"),
                      ({"repeat": {"every": "week"}}, "invalid_request"),
                      ({"repeat": {"every": "week", "sessions": 4, "until": "2027-06-01"}}, "invalid_request"),
                      ({"repeat": {"every": "week", "sessions": 4}, "id": "s" * 62}, "invalid_request"),
                      ({"starts_at": None}, "starts_at_required"),
                      ({"starts_at": past}, "starts_in_past")):
        expect(api.post("/v1/opportunities", lido, {**body, "id": "lido-bad", **bad}), 422, code)
    assert api.get("/v1/opportunities", vic, params={"series_id": "lido-bad"}).json() == []

    # A change of the whole series reaches every session still to come (here all four), each as its own edit.
    whole = api.request("PATCH", "/v1/series/lido-aqua", lido, {"title": "Aqua fit, deep end", "capacity": 2})
    assert whole.status_code == 200, whole.text
    assert whole.json()["changed"] == ids
    assert [(o["id"], o["title"], o["capacity"]) for o in whole.json()["sessions"]] == [
        (i, "Aqua fit, deep end", 2) for i in ids]
    assert api.get("/v1/opportunities/lido-aqua-3", vic).json()["title"] == "Aqua fit, deep end"
    assert api.request("PATCH", "/v1/series/lido-aqua", api.admin, {"capacity": None}).json()["sessions"][0][
        "capacity"] is None
    for token in (world.org(World.ARTS), world.lead, vic):
        expect(api.request("PATCH", "/v1/series/lido-aqua", token, {"capacity": 5}), 403, "forbidden")
    expect(api.request("PATCH", "/v1/series/lido-aqua", None, {"capacity": 5}), 401, "unauthenticated")
    expect(api.request("PATCH", "/v1/series/ser-nowhere", lido, {"capacity": 5}), 404, "unknown_series")
    for bad in ({}, {"cost": "2"}, {"starts_at": first.isoformat()}, {"title": None}, {"title": ""},
                {"capacity": 0}):
        expect(api.request("PATCH", "/v1/series/lido-aqua", lido, bad), 422, "invalid_request")


# --- hours -------------------------------------------------------------------------------------------------------


def test_hours_logged_then_approved_earn_credits_and_rejected_ones_do_not(api: Api, world: World) -> None:
    club = world.org(World.CLUB)
    volunteer_id, token = world.volunteer("hrs-ana")

    logged = api.accepted(api.post("/v1/hours", club, world.hours(volunteer_id, World.CLUB, 90)))
    first_look = api.get(f"/v1/events/{logged}", club).json()
    assert first_look["status"] in ("pending", "applied") and first_look["event_id"] == logged
    assert api.applied(logged, club)["entry_id"] is None  # recorded; it earns nothing until approved
    assert api.balance(volunteer_id, token) == {"volunteer_id": volunteer_id, "balance": "0.00", "held": "0.00",
                                                "available": "0.00"}

    approved = api.accepted(api.post(f"/v1/hours/{logged}/approve", club))
    outcome = api.applied(approved, club)
    assert isinstance(outcome["entry_id"], int) and outcome["reason"] is None
    assert api.balance(volunteer_id, token) == {"volunteer_id": volunteer_id, "balance": "1.50", "held": "0.00",
                                                "available": "1.50"}
    statement = api.get(f"/v1/volunteers/{volunteer_id}/statement", token).json()
    assert [(i["kind"], i["amount"], i["event_id"], i["entry_id"]) for i in statement["items"]] == [
        ("hours_approved", "1.50", approved, outcome["entry_id"])]
    expect(api.post(f"/v1/hours/{logged}/approve", club), 409, "already_decided")
    expect(api.post(f"/v1/hours/{logged}/reject", club, {"reason": "late"}), 409, "already_decided")

    second = api.applied(api.accepted(api.post("/v1/hours", api.admin, world.hours(volunteer_id, World.CLUB, 30))))
    rejected = api.accepted(api.post(f"/v1/hours/{second['event_id']}/reject", club, {"reason": "not on the rota"}))
    assert api.applied(rejected, club)["entry_id"] is None
    expect(api.post(f"/v1/hours/{second['event_id']}/approve", api.admin), 409, "already_decided")
    assert api.balance(volunteer_id)["available"] == "1.50"

    third = api.applied(api.accepted(api.post("/v1/hours", club, world.hours(volunteer_id, World.CLUB, 45))), club)
    assert api.accepted(api.post(f"/v1/hours/{third['event_id']}/reject", club))  # a reason is optional

    # Two decisions racing: the second is refused at once, or accepted and then rejected by the worker.
    fourth = api.applied(api.accepted(api.post("/v1/hours", club, world.hours(volunteer_id, World.CLUB, 15))), club)
    api.accepted(api.post(f"/v1/hours/{fourth['event_id']}/approve", club))
    late = api.post(f"/v1/hours/{fourth['event_id']}/reject", club)
    if late.status_code == 202:
        outcome = api.outcome(late.json()["event_id"], club)
        assert (outcome["status"], outcome["reason"], outcome["entry_id"]) == ("rejected", "already_decided", None)
    else:
        expect(late, 409, "already_decided")
    assert api.balance(volunteer_id)["available"] == "1.75"


def test_the_words_of_hours_and_of_a_rejection_stay_in_postgresql_and_the_events_carry_none(
        api: Api, world: World, shared_stack: Stack) -> None:
    """docs/design.md §5.16: the description and the reason are written by the API, keyed by the event id, in the
    transaction that publishes an event that carries neither; each volunteer reads their own back."""
    club = world.org(World.CLUB)
    volunteer_id, token = world.volunteer("words-ana")
    other, other_token = world.volunteer("words-ben")
    logged = _logged(api, club, world.hours(volunteer_id, World.CLUB, 60, activity="Read to Mr Ogunleye"))
    rejected = api.accepted(api.post(f"/v1/hours/{logged}/reject", club, {"reason": "Ana was ill that day"}))
    api.applied(rejected, club)
    with shared_stack.engine.connect() as conn:
        kept = {str(row.event_id): (row.kind, row.text) for row in conn.execute(
            text("SELECT event_id, kind, text FROM event_notes WHERE event_id IN (:l, :r)"), {"l": logged, "r": rejected})}
        columns = conn.execute(text("SELECT l.activity, d.reason FROM hours_logs l JOIN hours_decisions d "
                                    "ON d.log_event_id = l.event_id WHERE l.event_id = :l"), {"l": logged}).one()
    assert kept == {logged: ("hours_activity", "Read to Mr Ogunleye"), rejected: ("rejection_reason",
                                                                                 "Ana was ill that day")}
    assert tuple(columns) == (None, None)  # nothing in the append-only tables
    events = {e["event_id"]: e for e in map(json.loads, topic_records(shared_stack, "tc.activity"))
              if e["event_id"] in (logged, rejected)}
    assert set(events[logged]["payload"]) == {"volunteer_id", "org_id", "date", "minutes", "category"}
    assert set(events[rejected]["payload"]) == {"log_event_id", "volunteer_id", "org_id"}

    queue = _queue(api, club, volunteer_id=volunteer_id)["items"]
    assert [(i["log_event_id"], i["activity"], i["status"]) for i in queue] == [
        (logged, "Read to Mr Ogunleye", "rejected")]
    hours = api.get(f"/v1/volunteers/{volunteer_id}/export", token).json()["hours"]
    assert [(h["activity"], h["reason"]) for h in hours] == [("Read to Mr Ogunleye", "Ana was ill that day")]
    assert api.get(f"/v1/volunteers/{other}/export", other_token).json()["hours"] == []
    expect(api.get(f"/v1/volunteers/{volunteer_id}/export", other_token), 403, "forbidden")
    expect(api.get(f"/v1/volunteers/{volunteer_id}/export", world.lead), 403, "forbidden")
    expect(api.get("/v1/hours", world.lead, params={"volunteer_id": volunteer_id}), 403, "forbidden")
    expect(api.get("/v1/hours", token, params={"volunteer_id": volunteer_id}), 403, "forbidden")
    expect(api.get("/v1/hours", None, params={"volunteer_id": volunteer_id}), 401, "unauthenticated")


def test_a_registration_takes_the_background_detail_as_a_code_and_refuses_words(api: Api, world: World) -> None:
    """docs/design.md §5.16: the Social Mobility Commission's codes; an older client's words are a 422."""
    body = {"display_name": "Ana Lopez", "area": AREA, "consent_stats": True, "seb_detail": "my dad drove a bus"}
    expect(api.post("/v1/volunteers", api.admin, body), 422, "invalid_request")
    registered = api.post("/v1/volunteers", api.admin, {**body, "seb_detail": "routine_manual_and_service"})
    assert registered.status_code in (200, 201, 202), registered.text


def test_hours_are_logged_and_decided_within_an_organisations_own_scope(api: Api, world: World) -> None:
    club, hub = world.org(World.CLUB), world.org(World.HUB)
    volunteer_id, token = world.volunteer("hrs-ben")
    expect(api.post("/v1/hours", club, world.hours(volunteer_id, World.HUB)), 403, "forbidden")
    for who in (world.lead, token):
        expect(api.post("/v1/hours", who, world.hours(volunteer_id, World.CLUB)), 403, "forbidden")

    logged = api.applied(api.accepted(api.post("/v1/hours", club, world.hours(volunteer_id, World.CLUB))), club)
    for decision in ("approve", "reject"):
        expect(api.post(f"/v1/hours/{logged['event_id']}/{decision}", hub), 403, "forbidden")
        for who in (world.lead, token):
            expect(api.post(f"/v1/hours/{logged['event_id']}/{decision}", who), 403, "forbidden")
        expect(api.post(f"/v1/hours/{uuid.uuid4()}/{decision}", club), 404, "unknown_log")
        expect(api.post(f"/v1/hours/not-a-uuid/{decision}", club), 422, "invalid_request")
    expect(api.post(f"/v1/hours/{logged['event_id']}/reject", club, {"reason": "x" * 501}), 422, "invalid_request")
    assert api.balance(volunteer_id)["available"] == "0.00"  # none of that decided anything

    expect(api.post("/v1/hours", club, world.hours("nobody", World.CLUB)), 404, "unknown_volunteer")
    expect(api.post("/v1/hours", api.admin, world.hours(volunteer_id, "nowhere")), 404, "unknown_organisation")
    expect(api.post("/v1/hours", world.org(World.LIDO), world.hours(volunteer_id, World.LIDO)), 422,
           "not_a_community_organisation")
    assert api.accepted(api.post("/v1/hours", hub, world.hours(volunteer_id, World.HUB)))  # community and partner


@pytest.mark.parametrize("change", [
    {"minutes": -30}, {"minutes": 0}, {"minutes": 1441}, {"minutes": 1.5}, {"date": "02/11/2026"},
    {"date": "2026-02-30"}, {"activity": ""},
    {"activity": "x" * 201}, {"volunteer_id": ""}, {"volunteer_id": None}, {"extra": 1},
], ids=lambda change: "-".join(f"{k}={str(v)[:12]}" for k, v in change.items()))
def test_hours_invalid_on_their_face_are_refused_at_once(api: Api, world: World, change: dict[str, Any]) -> None:
    body = {**world.hours(world.face, World.CLUB), **change}
    expect(api.post("/v1/hours", world.org(World.CLUB), body), 422, "invalid_request")


def test_malformed_json_is_refused_before_anything_else(api: Api, world: World) -> None:
    for raw in (b"{", b'{"volunteer_id": "x",}', b"\xff\xfe", b'{"minutes": NaN'):
        expect(api.post("/v1/hours", world.org(World.CLUB), content=raw), 400, "malformed_json")
    expect(api.post("/v1/hours", world.org(World.CLUB), content=b"[]"), 422, "invalid_request")
    expect(api.post("/v1/hours", world.org(World.CLUB)), 422, "invalid_request")  # no body at all


# --- bookings ----------------------------------------------------------------------------------------------------


def test_a_booking_holds_credits_until_attended_or_cancelled(api: Api, world: World) -> None:
    volunteer_id, token = world.volunteer("bk-ana")
    world.earn(volunteer_id, 300)  # 5.00

    booked = api.accepted(api.post("/v1/bookings", token, {"opportunity_id": World.SWIM}))
    booking = api.applied(booked, token)
    assert isinstance(booking["entry_id"], int)
    assert api.balance(volunteer_id, token) == {"volunteer_id": volunteer_id, "balance": "5.00", "held": "2.00",
                                                "available": "3.00"}
    cancelled = api.applied(api.accepted(api.post(f"/v1/bookings/{booked}/cancel", token)), token)
    assert isinstance(cancelled["entry_id"], int)
    assert api.balance(volunteer_id, token) == {"volunteer_id": volunteer_id, "balance": "5.00", "held": "0.00",
                                                "available": "5.00"}
    again = api.post(f"/v1/bookings/{booked}/cancel", token)
    assert api.outcome(api.accepted(again), token)["reason"] == "booking_closed"

    lido = world.org(World.LIDO)
    by_partner = api.accepted(api.post("/v1/bookings", lido, {
        "opportunity_id": World.SWIM, "spend_code": world.spend_code(volunteer_id, token, World.LIDO, "2")}))
    api.applied(by_partner, lido)
    assert api.balance(volunteer_id)["held"] == "2.00"
    expect(api.post(f"/v1/bookings/{by_partner}/attend", world.org(World.ARTS)), 403, "forbidden")
    expect(api.post(f"/v1/bookings/{by_partner}/attend", token), 403, "forbidden")
    attended = api.applied(api.accepted(api.post(f"/v1/bookings/{by_partner}/attend", lido)), lido)
    assert isinstance(attended["entry_id"], int)
    assert api.balance(volunteer_id, token) == {"volunteer_id": volunteer_id, "balance": "3.00", "held": "0.00",
                                                "available": "3.00"}
    after = api.outcome(api.accepted(api.post(f"/v1/bookings/{by_partner}/cancel", lido)), lido)
    assert (after["status"], after["reason"], after["entry_id"]) == ("rejected", "booking_closed", None)

    by_admin = api.accepted(api.post("/v1/bookings", api.admin, {
        "opportunity_id": World.CLASS, "volunteer_id": volunteer_id,
        "spend_code": world.spend_code(volunteer_id, token, World.ARTS)}))
    api.applied(by_admin)
    api.applied(api.accepted(api.post(f"/v1/bookings/{by_admin}/cancel", world.org(World.ARTS))),
                world.org(World.ARTS))
    assert api.balance(volunteer_id)["available"] == "3.00"

    items = api.get(f"/v1/volunteers/{volunteer_id}/statement", token).json()["items"]
    assert [(i["kind"], i["amount"]) for i in items] == [
        ("booking_cancelled", "1.50"), ("opportunity_booked", "-1.50"), ("opportunity_booked", "-2.00"),
        ("booking_cancelled", "2.00"), ("opportunity_booked", "-2.00"), ("hours_approved", "5.00")]
    assert items[0]["related_event_id"] == by_admin and items[3]["related_event_id"] == booked


def test_a_no_show_is_the_partners_or_an_admins_word_and_costs_what_the_programme_says(
        api: Api, world: World, shared_stack: Stack) -> None:
    volunteer_id, token = world.volunteer("ns-nia")
    _, other_token = world.volunteer("ns-olu")
    world.earn(volunteer_id, 300)  # 5.00
    lido = world.org(World.LIDO)
    booked = api.accepted(api.post("/v1/bookings", token, {"opportunity_id": World.SWIM}))
    api.applied(booked, token)

    # Who may not: the volunteer, another volunteer, a lead, another partner, a community organisation, nobody.
    for who in (token, other_token, world.lead, world.org(World.ARTS), world.org(World.CLUB)):
        expect(api.post(f"/v1/bookings/{booked}/no-show", who), 403, "forbidden")
    expect(api.post(f"/v1/bookings/{booked}/no-show", None), 401, "unauthenticated")
    expect(api.post(f"/v1/bookings/{uuid.uuid4()}/no-show", lido), 404, "unknown_booking")
    expect(api.post("/v1/bookings/not-a-uuid/no-show", lido), 422, "invalid_request")
    assert api.balance(volunteer_id)["held"] == "2.00"  # none of that changed anything

    # The partner whose opportunity it is; by default a no-show costs the volunteer nothing.
    missed = api.applied(api.accepted(api.post(f"/v1/bookings/{booked}/no-show", lido)), lido)
    assert isinstance(missed["entry_id"], int)
    assert api.balance(volunteer_id, token) == {"volunteer_id": volunteer_id, "balance": "5.00", "held": "0.00",
                                                "available": "5.00"}
    expect(api.post(f"/v1/bookings/{booked}/no-show", lido), 409, "booking_closed")
    expect(api.post(f"/v1/bookings/{booked}/no-show", api.admin), 409, "booking_closed")
    after = api.outcome(api.accepted(api.post(f"/v1/bookings/{booked}/attend", lido)), lido)
    assert (after["status"], after["reason"]) == ("rejected", "booking_closed")
    items = api.get(f"/v1/volunteers/{volunteer_id}/statement", token).json()["items"]
    assert [(i["kind"], i["amount"], i["related_event_id"]) for i in items[:2]] == [
        ("booking_no_show", "2.00", booked), ("opportunity_booked", "-2.00", None)]
    expect(api.get(f"/v1/volunteers/{volunteer_id}/statement", other_token), 403, "forbidden")

    # An admin may say so for any partner's booking.
    by_admin = api.accepted(api.post("/v1/bookings", token, {"opportunity_id": World.CLASS}))
    api.applied(by_admin, token)
    api.applied(api.accepted(api.post(f"/v1/bookings/{by_admin}/no-show", api.admin)))
    assert api.balance(volunteer_id)["available"] == "5.00"

    # A programme whose no-shows cost the booking: the API applies its setting, the credits go to the partner.
    env = {**shared_stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN, "TIMECREDITS_NO_SHOW_COST": "full"}
    with ready_api(env, shared_stack.tmp / "api-no-show-full.log") as process:
        full = Api(process.url, ADMIN_TOKEN)
        try:
            again = api.accepted(full.post("/v1/bookings", token, {"opportunity_id": World.SWIM}))
            api.applied(again, token)
            expect(full.post(f"/v1/bookings/{again}/no-show", world.org(World.ARTS)), 403, "forbidden")
            api.applied(api.accepted(full.post(f"/v1/bookings/{again}/no-show", lido)), lido)
        finally:
            full.close()
    assert api.balance(volunteer_id, token) == {"volunteer_id": volunteer_id, "balance": "3.00", "held": "0.00",
                                                "available": "3.00"}
    items = api.get(f"/v1/volunteers/{volunteer_id}/statement", token).json()["items"]
    assert items[0]["kind"] == "opportunity_booked"  # the forfeit moved the held credits, not the available ones


def test_bookings_stay_within_the_callers_scope(api: Api, world: World) -> None:
    ana, ana_token = world.volunteer("bk-cara")
    ben, ben_token = world.volunteer("bk-dev")
    world.earn(ana, 120)
    expect(api.post("/v1/bookings", ana_token, {"opportunity_id": World.SWIM, "volunteer_id": ben}), 403, "forbidden")
    expect(api.post("/v1/bookings", world.org(World.ARTS), {"opportunity_id": World.SWIM, "volunteer_id": ana}),
           403, "forbidden")
    expect(api.post("/v1/bookings", world.lead, {"opportunity_id": World.SWIM, "volunteer_id": ana}), 403, "forbidden")
    expect(api.post("/v1/bookings", world.org(World.LIDO), {"opportunity_id": World.SWIM}), 403,
           "authorisation_required")
    expect(api.post("/v1/bookings", api.admin, {"opportunity_id": World.SWIM, "volunteer_id": ana}), 403,
           "authorisation_required")
    expect(api.post("/v1/bookings", ana_token, {"opportunity_id": "no-such-thing"}), 404, "unknown_opportunity")
    expect(api.post("/v1/bookings", world.org(World.LIDO), {"opportunity_id": World.SWIM, "volunteer_id": "nobody"}),
           403, "authorisation_required")
    # A code is for one partner: LIDO's code does not book at ARTS.
    expect(api.post("/v1/bookings", world.org(World.ARTS), {
        "opportunity_id": World.CLASS, "spend_code": world.spend_code(ana, ana_token, World.LIDO)}), 422,
        "invalid_code")
    for action in ("cancel", "attend"):
        expect(api.post(f"/v1/bookings/{uuid.uuid4()}/{action}", world.org(World.LIDO)), 404, "unknown_booking")

    booked = api.accepted(api.post("/v1/bookings", ana_token, {"opportunity_id": World.SWIM, "volunteer_id": ana}))
    api.applied(booked, ana_token)
    expect(api.post(f"/v1/bookings/{booked}/cancel", ben_token), 403, "forbidden")
    expect(api.post(f"/v1/bookings/{booked}/cancel", world.org(World.ARTS)), 403, "forbidden")
    expect(api.post(f"/v1/bookings/{booked}/cancel", world.lead), 403, "forbidden")
    expect(api.post(f"/v1/bookings/{booked}/attend", world.lead), 403, "forbidden")

    beyond = api.outcome(api.accepted(api.post("/v1/bookings", ben_token, {"opportunity_id": World.SWIM})), ben_token)
    assert (beyond["status"], beyond["reason"], beyond["entry_id"]) == ("rejected", "insufficient_credits", None)
    assert beyond["message"]
    assert api.balance(ben, ben_token)["balance"] == "0.00"


# --- places and waiting lists (docs/design.md §5.8) ----------------------------------------------------------------


def _limited(api: Api, world: World, opportunity_id: str, capacity: int) -> None:
    response = api.post("/v1/opportunities", world.org(World.LIDO), {
        "id": opportunity_id, "title": f"Swim session {opportunity_id}", "category": "sport", "cost": "1",
        "area": AREA, "capacity": capacity, "starts_at": "2027-01-05T10:00:00Z"})
    assert response.status_code == 201, response.text


def test_two_volunteers_racing_for_the_last_place_one_gets_it(api: Api, world: World) -> None:
    _limited(api, world, "lido-last", 1)
    racers = [world.volunteer(f"race-{n}") for n in range(2)]
    for volunteer_id, _ in racers:
        world.earn(volunteer_id, 120)
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(len(racers))

    def race(token: str) -> None:
        with httpx.Client(base_url=api.url, timeout=30) as client:
            barrier.wait()
            answers.append(client.post("/v1/bookings", json={"opportunity_id": "lido-last"},
                                       headers={"Authorization": f"Bearer {token}"}))

    threads = [threading.Thread(target=race, args=(token,)) for _, token in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Each is taken at once (the API's pre-check saw a place) or refused at once (the other applied first);
    # the worker decides the rest: exactly one booking of the last place is applied.
    fates = []
    for answer in answers:
        if answer.status_code == 202:
            outcome = api.outcome(answer.json()["event_id"])
            fates.append(outcome["reason"] if outcome["status"] == "rejected" else "applied")
        else:
            fates.append(error_code(answer)[1])
    assert sorted(fates) == ["applied", "fully_booked"], fates
    late, late_token = world.volunteer("race-late")
    world.earn(late, 120)
    refused = api.post("/v1/bookings", late_token, {"opportunity_id": "lido-last"})
    expect(refused, 409, "fully_booked")
    assert "no places left" in refused.json()["error"]["message"]


def test_a_waiting_list_is_joined_and_left_by_the_volunteer_for_themself(api: Api, world: World) -> None:
    _limited(api, world, "lido-wl-roles", 1)
    booker, booker_token = world.volunteer("wl-booker")
    world.earn(booker, 120)
    api.applied(api.accepted(api.post("/v1/bookings", booker_token, {"opportunity_id": "lido-wl-roles"})))
    ana, ana_token = world.volunteer("wl-ana")
    ben, ben_token = world.volunteer("wl-ben")
    path = "/v1/opportunities/lido-wl-roles/waitlist"
    for method in ("POST", "GET", "DELETE"):
        expect(api.request(method, path, None), 401, "unauthenticated")
        for other in (world.org(World.LIDO), world.lead, api.admin):
            expect(api.request(method, path, other), 403, "forbidden")
    expect(api.post(path, ana_token, {"volunteer_id": ben}), 403, "forbidden")  # not for someone else
    expect(api.get(path, ana_token), 404, "not_waiting")
    joined = api.post(path, ana_token)
    assert joined.status_code == 201, joined.text
    assert joined.json() == {"opportunity_id": "lido-wl-roles", "volunteer_id": ana, "position": 1,
                             "offered_until": None}
    again = api.post(path, ana_token, {"volunteer_id": ana})
    assert (again.status_code, again.json()["position"]) == (200, 1)
    assert api.post(path, ben_token).json()["position"] == 2
    assert api.get(path, ben_token).json()["position"] == 2
    # Who may not join: the one who booked it, a list of an opportunity with places left, or none at all.
    expect(api.post(path, booker_token), 409, "already_booked")
    expect(api.post(f"/v1/opportunities/{World.SWIM}/waitlist", ana_token), 409, "places_left")
    expect(api.post("/v1/opportunities/no-such-thing/waitlist", ana_token), 404, "unknown_opportunity")
    unlimited = api.post("/v1/opportunities", world.org(World.LIDO), {
        "id": "lido-open", "title": "Open swim", "category": "sport", "cost": "1", "area": AREA})
    assert unlimited.status_code == 201, unlimited.text
    expect(api.post("/v1/opportunities/lido-open/waitlist", ana_token), 422, "no_capacity")
    # Leaving: one's own place only; ben moves up.
    assert api.request("DELETE", path, ana_token).status_code == 204
    expect(api.request("DELETE", path, ana_token), 404, "not_waiting")
    assert api.get(path, ben_token).json()["position"] == 1


def test_a_freed_place_is_offered_in_order_held_and_passed_on_when_it_lapses(
        api: Api, world: World, shared_stack: Stack) -> None:
    from ledger.pg.waitlist import offer_places

    _limited(api, world, "lido-wl-offer", 1)
    path = "/v1/opportunities/lido-wl-offer/waitlist"
    people = {name: world.volunteer(f"wl-{name}") for name in ("first", "second", "third")}
    for volunteer_id, _ in people.values():
        world.earn(volunteer_id, 120)
    first_booking = api.accepted(api.post("/v1/bookings", people["first"][1], {"opportunity_id": "lido-wl-offer"}))
    api.applied(first_booking)
    for name in ("second", "third"):
        assert api.post(path, people[name][1]).status_code == 201
    now = datetime.now(UTC)
    assert offer_places(shared_stack.engine, now).offered == []  # no place is free

    api.applied(api.accepted(api.post(f"/v1/bookings/{first_booking}/cancel", people["first"][1])))
    run = offer_places(shared_stack.engine, now, offer_hours=24)
    assert [(o.opportunity_id, o.volunteer_id) for o in run.offered] == [("lido-wl-offer", people["second"][0])]
    held = api.get(path, people["second"][1]).json()
    assert held["position"] == 1 and held["offered_until"] is not None
    # The place is held for the second volunteer: the third (and the first, who cancelled) are refused.
    expect(api.post("/v1/bookings", people["third"][1], {"opportunity_id": "lido-wl-offer"}), 409, "fully_booked")
    expect(api.post("/v1/bookings", people["first"][1], {"opportunity_id": "lido-wl-offer"}), 409, "fully_booked")

    # A day later the second has not booked: the offer lapses, the place passes to the third, who books it.
    run = offer_places(shared_stack.engine, now + timedelta(hours=25), offer_hours=24)
    assert run.lapsed == [("lido-wl-offer", people["second"][0])]
    assert [o.volunteer_id for o in run.offered] == [people["third"][0]]
    expect(api.get(path, people["second"][1]), 404, "not_waiting")
    expect(api.post("/v1/bookings", people["second"][1], {"opportunity_id": "lido-wl-offer"}), 409, "fully_booked")
    api.applied(api.accepted(api.post("/v1/bookings", people["third"][1], {"opportunity_id": "lido-wl-offer"})))
    expect(api.get(path, people["third"][1]), 404, "not_waiting")  # booked: off the list


# --- redemptions and gifts ---------------------------------------------------------------------------------------


def test_redemptions_spend_credits_with_a_partner(api: Api, world: World) -> None:
    volunteer_id, token = world.volunteer("rd-ana")
    other, other_token = world.volunteer("rd-ben")
    world.earn(volunteer_id, 180)  # 3.00
    lido = world.org(World.LIDO)

    spent = api.applied(api.accepted(api.post("/v1/redemptions", token, {"partner_id": World.LIDO, "amount": "0.5"})),
                        token)
    assert isinstance(spent["entry_id"], int)
    on_behalf = api.accepted(api.post("/v1/redemptions", lido, {
        "volunteer_id": volunteer_id, "amount": "1.25", "opportunity_id": World.SWIM,
        "spend_code": world.spend_code(volunteer_id, token, World.LIDO)}))
    api.applied(on_behalf, lido)
    assert api.balance(volunteer_id, token)["available"] == "1.25"
    beyond = api.outcome(api.accepted(api.post("/v1/redemptions", token, {"partner_id": World.ARTS,
                                                                          "amount": "1.26"})), token)
    assert (beyond["status"], beyond["reason"], beyond["entry_id"]) == ("rejected", "insufficient_credits", None)
    assert api.balance(volunteer_id, token)["available"] == "1.25"

    expect(api.post("/v1/redemptions", token, {"volunteer_id": other, "partner_id": World.LIDO, "amount": "1"}),
           403, "forbidden")
    expect(api.post("/v1/redemptions", lido, {"volunteer_id": volunteer_id, "partner_id": World.ARTS, "amount": "1"}),
           403, "forbidden")
    expect(api.post("/v1/redemptions", world.lead, {"volunteer_id": volunteer_id, "partner_id": World.LIDO,
                                                    "amount": "1"}), 403, "forbidden")
    expect(api.post("/v1/redemptions", token, {"partner_id": World.CLUB, "amount": "1"}), 422, "not_a_partner")
    expect(api.post("/v1/redemptions", world.org(World.CLUB), {"volunteer_id": volunteer_id, "amount": "1"}),
           422, "not_a_partner")
    expect(api.post("/v1/redemptions", token, {"partner_id": "nowhere", "amount": "1"}), 404, "unknown_organisation")
    expect(api.post("/v1/redemptions", lido, {"volunteer_id": "nobody", "amount": "1"}), 403, "authorisation_required")
    expect(api.post("/v1/redemptions", api.admin, {"partner_id": World.LIDO, "amount": "1"}), 403,
           "authorisation_required")
    expect(api.post("/v1/redemptions", api.admin, {"amount": "1"}), 422, "invalid_request")  # with whom?
    expect(api.post("/v1/redemptions", other_token, {"amount": "1"}), 422, "invalid_request")  # with whom?
    for zero in ("0", "0.00", "000.0"):
        expect(api.post("/v1/redemptions", token, {"partner_id": World.LIDO, "amount": zero}), 422, "invalid_amount")
    for bad in ("1.005", "-1.00", "1,50", "1.", ".5", "1e2", "", " ", 1.5, None):
        expect(api.post("/v1/redemptions", token, {"partner_id": World.LIDO, "amount": bad}), 422, "invalid_request")
    assert api.balance(volunteer_id)["available"] == "1.25"


def test_a_redemption_names_an_opportunity_of_that_partner_or_none(api: Api, world: World) -> None:
    volunteer_id, token = world.volunteer("rd-opp")
    world.earn(volunteer_id, 60)
    for opportunity, status, reason in (("no-such-opportunity", 404, "unknown_opportunity"),
                                        (World.CLASS, 422, "opportunity_mismatch")):  # CLASS is at ARTS, not LIDO
        response = api.post("/v1/redemptions", token, {"partner_id": World.LIDO, "amount": "0.10",
                                                       "opportunity_id": opportunity})
        if response.status_code == 202:  # decided by the worker: acceptable too, if it is refused there
            outcome = api.outcome(response.json()["event_id"], token)
            assert (outcome["status"], outcome["reason"]) == ("rejected", reason), outcome
        else:
            expect(response, status, reason)
    assert api.balance(volunteer_id)["available"] == "1.00"


def test_volunteers_gift_credits_and_organisations_may_not(api: Api, world: World) -> None:
    ana, ana_token = world.volunteer("gf-ana")
    ben, ben_token = world.volunteer("gf-ben")
    world.earn(ana, 60)

    gifted = api.applied(api.accepted(api.post("/v1/gifts", ana_token, {"to_volunteer_id": ben, "amount": "0.25"})),
                         ana_token)
    assert isinstance(gifted["entry_id"], int)
    assert api.balance(ana, ana_token)["available"] == "0.75"
    assert api.balance(ben, ben_token)["available"] == "0.25"
    received = api.get(f"/v1/volunteers/{ben}/statement", ben_token).json()["items"]
    assert [(i["kind"], i["amount"], i["event_id"]) for i in received] == [
        ("credits_gifted", "0.25", gifted["event_id"])]
    assert api.get(f"/v1/volunteers/{ana}/statement", ana_token).json()["items"][0]["amount"] == "-0.25"

    beyond = api.outcome(api.accepted(api.post("/v1/gifts", ben_token, {"to_volunteer_id": ana, "amount": "0.26"})),
                         ben_token)
    assert (beyond["status"], beyond["reason"]) == ("rejected", "insufficient_credits")

    for who in (world.org(World.CLUB), world.lead, api.admin):
        expect(api.post("/v1/gifts", who, {"to_volunteer_id": ben, "amount": "0.10"}), 403, "forbidden")
    expect(api.post("/v1/gifts", ana_token, {"to_volunteer_id": ana, "amount": "0.10"}), 422, "self_gift")
    expect(api.post("/v1/gifts", ana_token, {"to_volunteer_id": "nobody", "amount": "0.10"}), 404, "unknown_volunteer")
    expect(api.post("/v1/gifts", ana_token, {"to_volunteer_id": ben, "amount": "0.00"}), 422, "invalid_amount")
    for bad in ({"amount": "1.005"}, {"amount": "-0.10"}, {"amount": 1}, {"from_volunteer_id": ben},
                {"to_volunteer_id": None}):
        expect(api.post("/v1/gifts", ana_token, {"to_volunteer_id": ben, "amount": "0.10", **bad}), 422,
               "invalid_request")
    assert api.balance(ana)["available"] == "0.75"


# --- spend codes: credits leave a volunteer's account only by their own act (docs/design.md §5.6) ---------------


def test_a_partner_takes_credits_only_with_the_volunteers_spend_code(api: Api, world: World) -> None:
    volunteer_id, token = world.volunteer("sc-ana")
    world.earn(volunteer_id, 300)  # 5.00
    lido = world.org(World.LIDO)
    expect(api.post("/v1/redemptions", lido, {"volunteer_id": volunteer_id, "amount": "1"}), 403,
           "authorisation_required")

    made = api.post(f"/v1/volunteers/{volunteer_id}/spend-codes", token,
                    {"partner_id": World.LIDO, "max_amount": "1.50", "valid_minutes": 5})
    assert made.status_code == 201, made.text
    code = made.json()
    assert re.fullmatch(r"[0-9]{8}", code["code"]) and code["max_amount"] == "1.50"
    assert code["partner_id"] == World.LIDO and code["qr_svg"].startswith("<svg")
    expires = datetime.fromisoformat(code["expires_at"])
    assert timedelta(minutes=4) < expires - datetime.now(UTC) <= timedelta(minutes=5)

    typed = f"{code['code'][:4]} {code['code'][4:]}"  # as read out at the counter; the code names the volunteer
    expect(api.post("/v1/redemptions", lido, {"amount": "1.51", "spend_code": typed}), 422, "code_amount_exceeded")
    other, _ = world.volunteer("sc-ben")
    expect(api.post("/v1/redemptions", lido, {"volunteer_id": other, "amount": "1", "spend_code": typed}), 422,
           "invalid_code")
    expect(api.post("/v1/redemptions", world.org(World.ARTS), {"amount": "1", "spend_code": typed}), 422,
           "invalid_code")
    paid = api.applied(api.accepted(api.post("/v1/redemptions", lido, {"amount": "1.50", "spend_code": typed})), lido)
    assert isinstance(paid["entry_id"], int)
    assert api.balance(volunteer_id, token)["available"] == "3.50"
    expect(api.post("/v1/redemptions", lido, {"amount": "0.10", "spend_code": typed}), 409, "code_used")
    expect(api.post("/v1/redemptions", token, {"partner_id": World.LIDO, "amount": "1", "spend_code": typed}), 422,
           "invalid_request")  # the volunteer's own act needs no code
    items = api.get(f"/v1/volunteers/{volunteer_id}/statement", token).json()["items"]
    assert (items[0]["kind"], items[0]["amount"]) == ("credits_redeemed", "-1.50")


def test_only_the_volunteer_makes_their_spend_codes(api: Api, world: World) -> None:
    volunteer_id, token = world.volunteer("sc-cara")
    _, other_token = world.volunteer("sc-dev")
    path = f"/v1/volunteers/{volunteer_id}/spend-codes"
    body = {"partner_id": World.LIDO, "max_amount": "1"}
    for who in (other_token, world.org(World.LIDO), world.org(World.CLUB), world.lead, api.admin):
        expect(api.post(path, who, body), 403, "forbidden")
    expect(api.post(path, None, body), 401, "unauthenticated")
    expect(api.post(path, token, {**body, "partner_id": "nowhere"}), 404, "unknown_organisation")
    expect(api.post(path, token, {**body, "partner_id": World.CLUB}), 422, "not_a_partner")
    expect(api.post(path, token, {**body, "max_amount": "0"}), 422, "invalid_amount")
    for bad in ({"valid_minutes": 0}, {"valid_minutes": 31}, {"max_amount": "-1"}, {"partner_id": None},
                {"extra": 1}):
        expect(api.post(path, token, {**body, **bad}), 422, "invalid_request")
    assert api.post(path, token, body).status_code == 201


def test_an_expired_code_is_refused(shared_stack: Stack, api: Api, world: World) -> None:
    volunteer_id, token = world.volunteer("sc-exp")
    world.earn(volunteer_id, 60)
    code = world.spend_code(volunteer_id, token, World.LIDO)
    with shared_stack.engine.begin() as conn:  # as if its minutes had passed
        conn.execute(text("UPDATE spend_codes SET created_at = now() - interval '20 minutes', "
                          "expires_at = now() - interval '10 minutes' WHERE volunteer_id = :v"), {"v": volunteer_id})
    expect(api.post("/v1/redemptions", world.org(World.LIDO), {"amount": "0.5", "spend_code": code}), 422,
           "code_expired")
    assert api.balance(volunteer_id)["available"] == "1.00"


def test_two_front_desks_racing_with_one_code_take_one_payment(api: Api, world: World) -> None:
    volunteer_id, token = world.volunteer("sc-race")
    world.earn(volunteer_id, 600)  # 10.00
    code = world.spend_code(volunteer_id, token, World.LIDO, "1")
    desks = [api.token("org", org_id=World.LIDO) for _ in range(2)]
    barrier = threading.Barrier(8)
    answers: list[httpx.Response] = []

    def pay(desk: str) -> None:
        barrier.wait()
        answers.append(httpx.post(api.url + "/v1/redemptions", json={"amount": "1", "spend_code": code}, timeout=30,
                                  headers={"Authorization": f"Bearer {desk}"}))

    threads = [threading.Thread(target=pay, args=(desks[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    accepted = [r.json()["event_id"] for r in answers if r.status_code == 202]
    refused = [error_code(r) for r in answers if r.status_code != 202]
    assert len(accepted) + len(refused) == 8 and set(refused) <= {(409, "code_used")}, refused
    outcomes = [api.outcome(event_id, api.admin) for event_id in accepted]
    assert sorted(o["reason"] or "applied" for o in outcomes).count("applied") == 1, outcomes
    assert {o["reason"] for o in outcomes if o["status"] == "rejected"} <= {"code_used"}
    assert api.balance(volunteer_id)["available"] == "9.00"


def test_guessing_spend_codes_is_refused_after_a_few_wrong_ones(api: Api, world: World) -> None:
    guesser = f"guess-{uuid.uuid4().hex[:6]}"
    api.organisation(guesser, ["partner"], AREA)
    desk = api.token("org", org_id=guesser)
    volunteer_id, token = world.volunteer("sc-guess")
    world.earn(volunteer_id, 60)
    right = world.spend_code(volunteer_id, token, guesser)
    wrong = [f"{(int(right) + n) % 10**8:08d}" for n in range(1, 11)]
    for guess in wrong:
        expect(api.post("/v1/redemptions", desk, {"amount": "0.1", "spend_code": guess}), 422, "invalid_code")
    limited = api.post("/v1/redemptions", desk, {"amount": "0.1", "spend_code": right})
    expect(limited, 429, "rate_limited")
    assert 0 < int(limited.headers["Retry-After"]) <= 15 * 60
    other_desk = world.org(World.LIDO)  # another organisation's guesses are its own
    expect(api.post("/v1/redemptions", other_desk, {"amount": "0.1", "spend_code": "00000000"}), 422, "invalid_code")
    assert api.balance(volunteer_id)["available"] == "1.00"


# --- earning that cannot run away (docs/design.md §5.6) ---------------------------------------------------------


def test_no_more_than_24_approved_hours_for_one_volunteer_on_one_day(api: Api, world: World) -> None:
    volunteer_id, _ = world.volunteer("day-ana")
    world.earn(volunteer_id, 20 * 60)
    club = world.org(World.CLUB)
    logged = api.applied(api.accepted(api.post("/v1/hours", club, world.hours(volunteer_id, World.CLUB, 5 * 60))),
                         club)
    expect(api.post(f"/v1/hours/{logged['event_id']}/approve", club), 422, "too_many_hours")
    expect(api.post("/v1/hours", world.org(World.AUTO), world.hours(volunteer_id, World.AUTO, 5 * 60)), 422,
           "too_many_hours")
    api.applied(api.accepted(api.post("/v1/hours", world.org(World.AUTO), world.hours(volunteer_id, World.AUTO, 4 * 60))),
                world.org(World.AUTO))
    assert api.balance(volunteer_id)["available"] == "24.00"
    api.applied(api.accepted(api.post(f"/v1/hours/{logged['event_id']}/reject", club, {"reason": "double entry"})),
                club)


def test_hours_dated_long_ago_need_an_admin_and_future_ones_are_refused(api: Api, world: World) -> None:
    volunteer_id, _ = world.volunteer("day-old")
    old = (TODAY - timedelta(days=93)).isoformat()
    expect(api.post("/v1/hours", world.org(World.CLUB), {**world.hours(volunteer_id, World.CLUB), "date": old}),
           422, "date_too_old")
    assert api.accepted(api.post("/v1/hours", world.org(World.CLUB), {
        **world.hours(volunteer_id, World.CLUB), "date": (TODAY - timedelta(days=92)).isoformat()}))
    by_admin = api.accepted(api.post("/v1/hours", api.admin, {**world.hours(volunteer_id, World.CLUB), "date": old}))
    assert api.applied(by_admin)["status"] == "applied"
    ahead = (TODAY + timedelta(days=30)).isoformat()
    for who in (world.org(World.CLUB), api.admin):
        expect(api.post("/v1/hours", who, {**world.hours(volunteer_id, World.CLUB), "date": ahead}), 422,
               "date_in_future")


# --- memberships and organisations' references -------------------------------------------------------------------


def test_a_volunteer_changes_consent_and_has_everything_held_about_them(api: Api, world: World) -> None:
    """docs/design.md §5.7; every role's answer is tried in tests/browser/test_web_volunteer.py."""
    volunteer, token = world.volunteer("privacy")
    world.earn(volunteer, 90)
    path = f"/v1/volunteers/{volunteer}/consent"
    assert api.get(path, token).json()["consent_stats"] is True
    withdrawn = api.request("PUT", path, token, {"consent_stats": False})
    assert withdrawn.status_code == 200 and [c["consent_stats"] for c in withdrawn.json()["history"]] == [True, False]
    expect(api.request("PUT", path, world.lead, {"consent_stats": True}), 403, "forbidden")
    export = api.get(f"/v1/volunteers/{volunteer}/export", token)
    assert export.status_code == 200 and export.json()["profile"][0]["consent_stats"] is False
    assert [row["amount"] for row in export.json()["ledger"]] == ["1.50"]
    bundle = api.get(f"/v1/volunteers/{volunteer}/export.zip", token)
    assert bundle.status_code == 200 and bundle.content.startswith(b"PK")


def _member_ids(api: Api, org_id: str, token: str) -> dict[str, str]:
    listed = api.get(f"/v1/organisations/{org_id}/members", token)
    assert listed.status_code == 200, listed.text
    return {m["volunteer_id"]: m["status"] for m in listed.json()}


def test_an_organisation_logs_hours_only_for_its_members_and_adds_one_only_with_their_agreement(
        api: Api, world: World) -> None:
    club = world.org(World.CLUB)
    vera, vera_token = world.volunteer("mb-vera", member_of=())
    expect(api.post("/v1/hours", club, world.hours(vera, World.CLUB)), 422, "not_a_member")
    expect(api.post("/v1/hours", api.admin, world.hours(vera, World.CLUB)), 422, "not_a_member")
    expect(api.get(f"/v1/volunteers/{vera}/balance", club), 403, "not_a_member")

    # The club asks: pending, and still not a member, until Vera agrees with her own credential.
    asked = api.post(f"/v1/organisations/{World.CLUB}/members", club, {"volunteer_id": vera, "reference": "C-0100"})
    assert asked.status_code == 202, asked.text
    assert {k: asked.json()[k] for k in ("status", "reference")} == {"status": "pending", "reference": "C-0100"}
    assert _member_ids(api, World.CLUB, club)[vera] == "pending"
    expect(api.post("/v1/hours", club, world.hours(vera, World.CLUB)), 422, "not_a_member")
    mine = api.get(f"/v1/volunteers/{vera}/memberships", vera_token).json()
    assert [(m["org_id"], m["status"]) for m in mine] == [(World.CLUB, "pending")]

    agreed = api.post(f"/v1/organisations/{World.CLUB}/members", vera_token, {})
    assert agreed.status_code == 201, agreed.text
    assert {k: agreed.json()[k] for k in ("status", "reference", "volunteer_id")} == {
        "status": "member", "reference": "C-0100", "volunteer_id": vera}
    assert _member_ids(api, World.CLUB, club)[vera] == "member"
    logged = api.applied(api.accepted(api.post("/v1/hours", club, world.hours(vera, World.CLUB))), club)
    assert api.get(f"/v1/volunteers/{vera}/balance", club).status_code == 200
    again = api.post(f"/v1/organisations/{World.CLUB}/members", vera_token, {})
    assert (again.status_code, again.json()["status"]) == (200, "member")

    # The club ends it: no more hours, but those logged while she was a member are still approved.
    ended = api.request("DELETE", f"/v1/organisations/{World.CLUB}/members/{vera}", club)
    assert (ended.status_code, ended.json()["status"]) == (200, "ended"), ended.text
    assert ended.json()["ended_at"] is not None
    assert vera not in _member_ids(api, World.CLUB, club)
    expect(api.post("/v1/hours", club, world.hours(vera, World.CLUB)), 422, "not_a_member")
    expect(api.get(f"/v1/volunteers/{vera}/statement", club), 403, "not_a_member")
    approved = api.post(f"/v1/hours/{logged['event_id']}/approve", club)
    api.applied(api.accepted(approved), club)
    assert api.balance(vera, vera_token)["balance"] == "1.00"
    expect(api.request("DELETE", f"/v1/organisations/{World.CLUB}/members/{vera}", club), 404, "not_a_member")

    # The admin adds her back at once; the history keeps both spells.
    rejoined = api.post(f"/v1/organisations/{World.CLUB}/members", api.admin, {"volunteer_id": vera})
    assert (rejoined.status_code, rejoined.json()["status"]) == (201, "member"), rejoined.text
    api.applied(api.accepted(api.post("/v1/hours", club, world.hours(vera, World.CLUB))), club)
    history = api.get(f"/v1/volunteers/{vera}/memberships", vera_token).json()
    assert [(m["org_id"], m["status"]) for m in history] == [(World.CLUB, "ended"), (World.CLUB, "member")]
    assert history[0]["ended_at"] is not None and history[1]["ended_at"] is None

    # She ends it herself; an organisation's pending request can be withdrawn too.
    left = api.request("DELETE", f"/v1/organisations/{World.CLUB}/members/{vera}", vera_token)
    assert (left.status_code, left.json()["status"]) == (200, "ended"), left.text
    assert api.post(f"/v1/organisations/{World.HUB}/members", world.org(World.HUB),
                    {"volunteer_id": vera}).status_code == 202
    withdrawn = api.request("DELETE", f"/v1/organisations/{World.HUB}/members/{vera}", world.org(World.HUB))
    assert withdrawn.status_code == 200 and vera not in _member_ids(api, World.HUB, world.org(World.HUB))


def test_who_may_manage_and_list_members(api: Api, world: World) -> None:
    ana, ana_token = world.volunteer("mw-ana", member_of=(World.CLUB,))
    ben, ben_token = world.volunteer("mw-ben", member_of=())
    club, hub = world.org(World.CLUB), world.org(World.HUB)
    path = f"/v1/organisations/{World.CLUB}/members"
    for token in (None, "tc_not-a-token"):
        assert error_code(api.post(path, token, {"volunteer_id": ben}))[0] == 401
        assert error_code(api.get(path, token))[0] == 401
        assert error_code(api.request("DELETE", f"{path}/{ana}", token))[0] == 401
    expect(api.post(path, world.lead, {"volunteer_id": ben}), 403, "forbidden")
    expect(api.post(path, hub, {"volunteer_id": ben}), 403, "forbidden")
    expect(api.post(path, ben_token, {"volunteer_id": ana}), 403, "forbidden")
    expect(api.post(path, ben_token, {"reference": "MINE"}), 403, "forbidden")
    for token in (world.lead, hub, ana_token):
        expect(api.get(path, token), 403, "forbidden")
    for token in (world.lead, hub, ben_token):
        expect(api.request("DELETE", f"{path}/{ana}", token), 403, "forbidden")
    for token in (ben_token, club, world.lead):
        expect(api.get(f"/v1/volunteers/{ana}/memberships", token), 403, "forbidden")
    expect(api.post(path, club, {"volunteer_id": "v-000000000000"}), 404, "unknown_volunteer")
    expect(api.post("/v1/organisations/no-such-org/members", api.admin, {"volunteer_id": ben}), 404,
           "unknown_organisation")
    expect(api.post(path, club, {}), 422, "invalid_request")
    expect(api.post(path, club, {"volunteer_id": "a:b"}), 422, "invalid_request")
    expect(api.get("/v1/organisations/no-such-org/members", api.admin), 404, "unknown_organisation")
    # Each organisation sees its own members only.
    assert ana in _member_ids(api, World.CLUB, club) and ana in _member_ids(api, World.CLUB, api.admin)
    assert ana not in _member_ids(api, World.HUB, hub)


def test_an_organisations_own_reference_is_given_changed_and_erased_by_that_organisation(
        api: Api, world: World) -> None:
    club = world.org(World.CLUB)
    ana, _ = world.volunteer("ref-ana", member_of=(World.CLUB,))
    ben, _ = world.volunteer("ref-ben", member_of=(World.CLUB, World.HUB))
    path = f"/v1/organisations/{World.CLUB}/members"
    given = api.post(path, club, {"volunteer_id": ana, "reference": "R-1"})
    assert (given.status_code, given.json()["reference"]) == (200, "R-1"), given.text
    changed = api.request("PUT", f"{path}/{ana}/reference", club, {"reference": "R-2"})
    assert (changed.status_code, changed.json()["reference"]) == (200, "R-2"), changed.text
    expect(api.request("PUT", f"{path}/{ben}/reference", club, {"reference": "R-2"}), 409, "reference_taken")
    # The same reference at another organisation names whoever that organisation gave it to.
    assert api.post(f"/v1/organisations/{World.HUB}/members", world.org(World.HUB),
                    {"volunteer_id": ben, "reference": "R-2"}).status_code == 200
    expect(api.request("PUT", f"{path}/{ana}/reference", world.org(World.HUB), {"reference": "R-9"}), 403,
           "forbidden")
    expect(api.request("PUT", f"{path}/{ana}/reference", world.lead, {"reference": "R-9"}), 403, "forbidden")
    expect(api.request("PUT", f"/v1/organisations/{World.HUB}/members/{ana}/reference", world.org(World.HUB),
                       {"reference": "R-9"}), 404, "not_a_member")
    expect(api.request("PUT", f"{path}/{ana}/reference", club, {"reference": ""}), 422, "invalid_request")
    erased = api.request("PUT", f"{path}/{ana}/reference", club, {"reference": None})
    assert (erased.status_code, erased.json()["reference"]) == (200, None)
    listed = {m["volunteer_id"]: m["reference"] for m in api.get(path, club).json()}
    assert listed[ana] is None


# --- balances and statements -------------------------------------------------------------------------------------


def test_a_balance_and_statement_are_read_by_that_volunteer_its_organisations_and_admins(api: Api,
                                                                                         world: World) -> None:
    ana, ana_token = world.volunteer("st-ana")
    _, ben_token = world.volunteer("st-ben")
    for minutes in (60, 90, 30, 15, 45):
        world.earn(ana, minutes)
    for reader in (ana_token, world.org(World.AUTO), world.org(World.CLUB), api.admin):
        assert api.balance(ana, reader) == {"volunteer_id": ana, "balance": "4.00", "held": "0.00",
                                            "available": "4.00"}
        assert api.get(f"/v1/volunteers/{ana}/statement", reader).status_code == 200
    for what in ("balance", "statement"):
        expect(api.get(f"/v1/volunteers/{ana}/{what}", ben_token), 403, "forbidden")
        expect(api.get(f"/v1/volunteers/{ana}/{what}", world.lead), 403, "forbidden")
        # An organisation she is not a member of learns nothing, not even whether she exists.
        expect(api.get(f"/v1/volunteers/{ana}/{what}", world.org(World.LIDO)), 403, "not_a_member")
        expect(api.get(f"/v1/volunteers/nobody/{what}", world.org(World.LIDO)), 403, "not_a_member")
        expect(api.get(f"/v1/volunteers/nobody/{what}", api.admin), 404, "unknown_volunteer")
        expect(api.get(f"/v1/volunteers/a:b/{what}", api.admin), 422, "invalid_request")

    whole = api.get(f"/v1/volunteers/{ana}/statement", ana_token).json()
    assert whole["volunteer_id"] == ana and whole["next_before"] is None
    assert [i["amount"] for i in whole["items"]] == ["0.75", "0.25", "0.50", "1.50", "1.00"]  # newest first
    assert all(i["kind"] == "hours_approved" and AMOUNT.match(i["amount"]) and i["occurred_at"] for i in whole["items"])

    pages, before = [], None
    while True:
        params = {"limit": 2, **({"before": before} if before is not None else {})}
        page = api.get(f"/v1/volunteers/{ana}/statement", ana_token, params=params).json()
        pages.append([i["entry_id"] for i in page["items"]])
        before = page["next_before"]
        if before is None:
            break
        assert before == page["items"][-1]["entry_id"]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e for p in pages for e in p] == [i["entry_id"] for i in whole["items"]]
    ids = [i["entry_id"] for i in whole["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert api.get(f"/v1/volunteers/{ana}/statement", ana_token, params={"before": ids[-1]}).json()["items"] == []
    for params in ({"limit": 0}, {"limit": 201}, {"before": 0}, {"before": "x"}):
        expect(api.get(f"/v1/volunteers/{ana}/statement", ana_token, params=params), 422, "invalid_request")


# --- event outcomes ----------------------------------------------------------------------------------------------


def test_an_event_is_told_to_its_actor_and_admins_only(api: Api, world: World) -> None:
    ana, ana_token = world.volunteer("ev-ana")
    _, ben_token = world.volunteer("ev-ben")
    logged = api.accepted(api.post("/v1/hours", world.org(World.CLUB), world.hours(ana, World.CLUB)))
    for stranger in (ana_token, ben_token, world.org(World.HUB), world.lead, api.token("org", org_id=World.LIDO)):
        expect(api.get(f"/v1/events/{logged}", stranger), 404, "unknown_event")
    another_club_token = api.token("org", org_id=World.CLUB)  # one organisation's tokens are one actor
    assert api.applied(logged, another_club_token)["event_id"] == logged
    assert api.applied(logged, api.admin)["event_id"] == logged
    assert api.applied(logged, api.token("admin"))["event_id"] == logged

    expect(api.get(f"/v1/events/{uuid.uuid4()}", api.admin), 404, "unknown_event")
    expect(api.get(f"/v1/events/{uuid.uuid4()}", ana_token), 404, "unknown_event")
    expect(api.get("/v1/events/not-a-uuid", api.admin), 422, "invalid_request")


# --- statistics --------------------------------------------------------------------------------------------------


def test_statistics_are_for_leads_and_admins(api: Api, world: World) -> None:
    _, token = world.volunteer("stat-ana")
    for path in ("/v1/stats/participation", "/v1/stats/participation.csv", "/v1/stats/cold-spots"):
        for who in (token, world.org(World.CLUB)):
            expect(api.get(path, who), 403, "forbidden")
        expect(api.get(path, None), 401, "unauthenticated")
        expect(api.get(path, world.lead, params={"from": "2026-05-01", "to": "2026-04-01"}), 422, "invalid_period")
        expect(api.get(path, world.lead, params={"period": "2026-Q5"}), 422, "invalid_request")
        assert api.get(path, api.admin).status_code == 200

    for group_by in ("month", "org", "area", "age_band", "seb", "activity"):
        response = api.get("/v1/stats/participation", world.lead, params={"group_by": group_by})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["group_by"] == group_by
        for cell in (*body["rows"], body["totals"]):
            figures = {k: v for k, v in cell.items() if k not in ("suppressed", "withheld", "group", "label", "kinds")}
            if cell["suppressed"]:  # fewer than 5 volunteers: no figure at all, never a small number
                assert all(v is None for v in figures.values()), cell
            else:  # credits as decimal strings, unless that one figure is withheld
                for name in ("credits_earned", "credits_spent", "credits_gifted"):
                    if cell[name] is None:
                        assert name in cell["withheld"], cell
                    else:
                        assert AMOUNT.match(cell[name]), cell
    expect(api.get("/v1/stats/participation", world.lead, params={"group_by": "shoe_size"}), 422, "invalid_request")

    csv_answer = api.get("/v1/stats/participation.csv", world.lead, params={"group_by": "area"})
    assert csv_answer.status_code == 200 and csv_answer.headers["content-type"].startswith("text/csv")
    assert csv_answer.text.splitlines()[0].startswith("area,label,")
    spots = api.get("/v1/stats/cold-spots", world.lead, params={"period": str(TODAY.year)})
    assert spots.status_code == 200 and isinstance(spots.json()["areas"], list)


def test_figures_for_part_of_a_month_are_refused_in_plain_words(api: Api, world: World) -> None:
    """Days could be differenced down to one person's hours: figures are for whole months (docs/design.md §5.3)."""
    parts = ({"from": "2026-07-02", "to": "2026-07-31"}, {"from": "2026-07-01", "to": "2026-07-30"},
             {"from": YESTERDAY, "to": YESTERDAY}, {"from": "2026-07-01", "to": "2026-08-01"})
    for path in ("/v1/stats/participation", "/v1/stats/participation.csv", "/v1/stats/cold-spots"):
        for who in (world.lead, api.admin):
            for params in parts:
                answer = api.get(path, who, params=params)
                expect(answer, 422, "whole_periods_only")
                assert "whole months" in answer.json()["error"]["message"], answer.text
            for whole in ({"from": "2026-07-01", "to": "2026-09-30"}, {"from": "2024-02-01", "to": "2024-02-29"}):
                assert api.get(path, who, params=whole).status_code == 200
        expect(api.get(path, world.org(World.CLUB), params=parts[0]), 403, "forbidden")  # who first, then what


def test_a_breakdown_with_one_small_cell_hides_a_second_so_no_total_gives_it_away(api: Api, world: World) -> None:
    auto = world.org(World.AUTO)
    city = "E09000001"  # no other test's volunteers live there: three volunteers make the only small area
    for n in range(5):  # and five elsewhere, so that the total is shown whichever tests ran before
        api.applied(api.accepted(api.post("/v1/hours", auto, world.hours(world.volunteer(f"town-{n}")[0],
                                                                         World.AUTO, 30))), auto)
    for n in range(3):
        volunteer_id = api.volunteer(f"city-{n}", city, member_of=(World.AUTO,))
        api.applied(api.accepted(api.post("/v1/hours", auto, world.hours(volunteer_id, World.AUTO, 50))), auto)
    period = {"group_by": "area", "period": YESTERDAY[:7]}

    def answer() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get("/v1/stats/participation", world.lead, params=period).json()
        return body if any(row["group"] == city for row in body["rows"]) else None

    body = wait_until(answer, timeout=30, what="the small area in the statistics")
    rows = {row["group"]: row for row in body["rows"]}
    assert rows[city]["suppressed"] and rows[city]["hours"] is None
    assert body["totals"]["hours"] is not None, "the total is shown: so a second area must be hidden"
    # The figures the three are behind: none is alone hidden, so none is the total less the other areas. Their
    # other figures (bookings, spending...) are zeros nobody is behind, which need no partner (§5.3).
    theirs = ("volunteers", "active_volunteers", "new_volunteers", "hours", "credits_earned")
    for name in additive_figures("area"):
        hidden = [group for group, row in rows.items() if row[name] is None]
        if name in theirs:
            assert len(hidden) >= 2, f"{name}: the one hidden area is the total less the others"
        elif len(hidden) == 1:
            assert hidden == [city], (name, hidden)
    hours_hidden = [group for group, row in rows.items() if row["hours"] is None]
    assert city in hours_hidden and len(hours_hidden) >= 2
    for group in hours_hidden:
        assert rows[group]["suppressed"] or "hours" in rows[group]["withheld"], rows[group]
    lines = list(csv.DictReader(io.StringIO(api.get("/v1/stats/participation.csv", world.lead, params=period).text)))
    assert {line["area"] for line in lines if line["hours"] == "[c]"} == set(hours_hidden), "the CSV hides the same"


def test_the_kind_of_activity_given_with_hours_reaches_the_statistics_breakdown(api: Api, world: World) -> None:
    auto = world.org(World.AUTO)
    expect(api.post("/v1/hours", auto, world.hours(world.face, World.AUTO, category="knitting")), 422,
           "invalid_request")
    volunteers = [world.volunteer(f"kind-{n}")[0] for n in range(5)]
    for volunteer_id in volunteers:
        api.applied(api.accepted(api.post("/v1/hours", auto, world.hours(volunteer_id, World.AUTO, 40,
                                                                         category="arts_and_culture"))), auto)
    # Five more give fewer hours of another kind: should a small kind of activity need a second row hidden with
    # it (docs/design.md §5.3), theirs is the next smallest, not the arts.
    for n in range(5):
        api.applied(api.accepted(api.post("/v1/hours", auto, world.hours(world.volunteer(f"kind-admin-{n}")[0],
                                                                         World.AUTO, 15,
                                                                         category="admin_and_fundraising"))), auto)

    period = {"group_by": "activity", "period": YESTERDAY[:7]}  # figures are for whole months only

    def kind(group: str) -> dict[str, Any] | None:
        rows = api.get("/v1/stats/participation", world.lead, params=period).json()["rows"]
        found = [row for row in rows if row["group"] == group]
        return found[0] if found and not found[0]["suppressed"] else None

    def counted(group: str) -> bool:
        row = kind(group)
        return row is not None and row["active_volunteers"] == 5

    # The facts follow tc.ledger; five volunteers' hours show once all of them are counted.
    wait_until(lambda: counted("arts_and_culture") and counted("admin_and_fundraising"), timeout=30,
               what="the five volunteers' arts and culture hours, and the other five's, in the statistics")
    row = kind("arts_and_culture")
    assert row is not None and row["label"] == "Arts and culture" and row["hours"] == f"{5 * 40 / 60:.2f}"
    csv_answer = api.get("/v1/stats/participation.csv", world.lead, params=period)
    assert csv_answer.status_code == 200 and "arts_and_culture,Arts and culture," in csv_answer.text


def test_a_name_that_a_spreadsheet_would_run_as_a_formula_is_inert_in_the_csv(api: Api, world: World) -> None:
    created = api.post("/v1/organisations", api.admin, {"id": "formula-club", "name": '=HYPERLINK("http://x","y")',
                                                        "area": AREA, "kinds": ["community"], "auto_approve": True})
    assert created.status_code == 201, created.text
    token = api.token("org", org_id="formula-club")
    volunteer, _ = world.volunteer("formula", member_of=("formula-club",))
    api.applied(api.accepted(api.post("/v1/hours", token, world.hours(volunteer, "formula-club", 30))), token)
    period = {"group_by": "org", "period": YESTERDAY[:7]}

    def rows() -> list[str]:
        answer = api.get("/v1/stats/participation.csv", world.lead, params=period)
        return [line for line in answer.text.splitlines() if line.startswith("formula-club,")]

    wait_until(lambda: bool(rows()), timeout=30, what="the organisation's row in the statistics")
    assert rows()[0].startswith('formula-club,"\'=HYPERLINK(""http://x"",""y"")"'), rows()


_ORUK = Path(__file__).parent.parent / "openreferral"


def _oruk_validator(name: str) -> Any:
    schema = json.loads((_ORUK / f"{name}.json").read_text(encoding="utf-8"))
    return jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())


def test_the_opportunities_are_open_data_in_the_open_referral_uk_standard(api: Api, world: World) -> None:
    page_schema, listed, full = (_oruk_validator(n) for n in ("page", "service_list", "service"))
    answer = api.get("/openreferral/services", None, params={"per_page": 100})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
    body = answer.json()
    page_schema.validate(body)
    assert body["contents"] and body["content"] == body["contents"] and body["totalElements"] == body["total_items"]
    for item in body["contents"]:
        listed.validate(item)
        full.validate(item)
    full_props = set(json.loads((_ORUK / "service.json").read_text(encoding="utf-8"))["properties"])
    assert all(set(item) <= full_props for item in body["contents"]), "the standard's fields only"
    assert world.face not in answer.text, "nothing about a volunteer"
    by_name = {item["name"]: item for item in body["contents"]}
    swim = next(item for item in body["contents"] if item["organization"]["name"] and
                item["cost_options"][0]["amount"] == 2.0 and item["attributes"][0]["taxonomy_term"]["name"] == "sport"
                and item["service_areas"][0]["extent"] == AREA)
    assert "2.00 credits" in swim["description"] and by_name

    one = api.get(f"/openreferral/services/{swim['id']}", None)
    assert one.status_code == 200 and one.json() == swim
    full.validate(one.json())
    expect(api.get("/openreferral/services/00000000-0000-4000-8000-000000000000", None), 404, "unknown_service")

    in_area = api.get("/openreferral/services", None, params={"area": OTHER_AREA, "per_page": 100}).json()
    assert in_area["contents"] and {i["service_areas"][0]["extent"] for i in in_area["contents"]} == {OTHER_AREA}
    courses = api.get("/openreferral/services", None, params={"taxonomy_id": "course", "per_page": 100}).json()
    assert courses["contents"] and {i["attributes"][0]["taxonomy_term"]["name"] for i in courses["contents"]} == {"course"}
    term = swim["attributes"][0]["taxonomy_term_id"]
    sport = api.get("/openreferral/services", None, params={"taxonomy_term_id": term, "per_page": 100}).json()
    assert swim["id"] in {i["id"] for i in sport["contents"]}
    assert all(i["attributes"][0]["taxonomy_term_id"] == term for i in sport["contents"])
    expect(api.get("/openreferral/services", None, params={"taxonomy_id": "party"}), 422, "unknown_taxonomy_term")
    expect(api.get("/openreferral/services", None, params={"page": 0}), 422, "invalid_request")

    total = body["total_items"]
    first = api.get("/openreferral/services", None, params={"per_page": 1}).json()
    second = api.get("/openreferral/services", None, params={"per_page": 1, "page": 2}).json()
    last = api.get("/openreferral/services", None, params={"per_page": 1, "page": total}).json()
    assert (first["totalPages"], first["number"], first["size"], first["first"], first["last"]) == (total, 1, 1, True,
                                                                                                     False)
    assert second["number"] == 2 and not second["first"] and second["content"][0]["id"] != first["content"][0]["id"]
    assert last["last"] and last["last_page"] and len(last["contents"]) == 1
    beyond = api.get("/openreferral/services", None, params={"per_page": 1, "page": total + 1}).json()
    assert beyond["empty"] and beyond["contents"] == []

    expect(api.get("/v1/opportunities", None), 401, "unauthenticated")  # the rest of the API still needs a token


# --- roles that write nothing ------------------------------------------------------------------------------------


def test_a_lead_writes_nothing(api: Api, world: World) -> None:
    bodies: dict[str, Any] = {
        "/v1/organisations": {"id": "lead-org", "name": "x", "area": AREA, "kinds": ["community"]},
        "/v1/volunteers": {"display_name": "x", "area": AREA, "consent_stats": True},
        "/v1/tokens": {"role": "lead"},
        "/v1/hours": world.hours("lead-v", World.CLUB),
        "/v1/opportunities": {"partner_id": World.LIDO, "title": "x", "category": "sport", "cost": "1", "area": AREA},
        "/v1/bookings": {"opportunity_id": World.SWIM, "volunteer_id": "lead-v"},
        "/v1/redemptions": {"volunteer_id": "lead-v", "partner_id": World.LIDO, "amount": "1"},
        "/v1/gifts": {"to_volunteer_id": "lead-v", "amount": "1"},
    }
    writes = [path for path, item in api.get("/openapi.json", None).json()["paths"].items() if "post" in item]
    assert writes
    for path in writes:
        concrete = path.replace("{event_id}", str(uuid.uuid4()))
        expect(api.post(concrete, world.lead, bodies.get(path, {})), 403, "forbidden")


# --- idempotency -------------------------------------------------------------------------------------------------


def _settled(stack: Stack, key: str) -> None:
    """Until every use of `key` has its answer stored (see test_an_answered_key_is_never_in_progress)."""
    def done() -> bool:
        with stack.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FILTER (WHERE status_code IS NULL), count(*) "
                                     "FROM idempotency_keys WHERE key = :k"), {"k": key}).one() == (0, 1)
    wait_until(done, 10, f"Idempotency-Key {key} to be settled", interval=0.02)


def test_the_same_idempotency_key_and_body_get_the_first_answer_again(shared_stack: Stack, api: Api,
                                                                      world: World) -> None:
    club = world.org(World.CLUB)
    volunteer_id, _ = world.volunteer("idem-ana")
    body = world.hours(volunteer_id, World.CLUB, 60)
    key = {"Idempotency-Key": f"sheet-2026-11-row-{uuid.uuid4()}"}

    first = api.post("/v1/hours", club, body, headers=key)
    event_id = api.accepted(first)
    assert "idempotent-replayed" not in first.headers
    _settled(shared_stack, key["Idempotency-Key"])
    replay = api.post("/v1/hours", club, body, headers=key)
    assert replay.status_code == 202 and replay.json()["event_id"] == event_id
    assert replay.headers["idempotent-replayed"] == "true"
    expect(api.post("/v1/hours", club, {**body, "minutes": 61}, headers=key), 409, "idempotency_key_reused")

    # Scoped to the caller (the token) and the path: the same key elsewhere is a new request.
    another_club_token = api.token("org", org_id=World.CLUB)
    assert api.accepted(api.post("/v1/hours", another_club_token, body, headers=key)) != event_id
    api.applied(event_id, club)
    decided = api.post(f"/v1/hours/{event_id}/approve", club, headers=key)
    assert api.accepted(decided) != event_id and "idempotent-replayed" not in decided.headers

    # Registry writes (201) are kept and replayed too; so is a conflict no later state can change.
    volunteer = {"display_name": "Idem", "area": AREA, "consent_stats": True}
    vkey = {"Idempotency-Key": str(uuid.uuid4())}
    created = api.post("/v1/volunteers", api.admin, volunteer, headers=vkey)
    _settled(shared_stack, vkey["Idempotency-Key"])
    again = api.post("/v1/volunteers", api.admin, volunteer, headers=vkey)
    assert created.status_code == again.status_code == 201 and created.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    fkey = {"Idempotency-Key": str(uuid.uuid4())}
    api.applied(decided.json()["event_id"], club)
    expect(api.post(f"/v1/hours/{event_id}/approve", club, headers=fkey), 409, "already_decided")
    _settled(shared_stack, fkey["Idempotency-Key"])
    final = api.post(f"/v1/hours/{event_id}/approve", club, headers=fkey)
    expect(final, 409, "already_decided")
    assert final.headers["idempotent-replayed"] == "true"

    # An answer that may change later is not kept: the key is free again, and a retry is decided afresh.
    for path, payload, status, code in ((f"/v1/hours/{uuid.uuid4()}/approve", None, 404, "unknown_log"),
                                        ("/v1/hours", {**body, "minutes": -5}, 422, "invalid_request")):
        rkey = {"Idempotency-Key": str(uuid.uuid4())}
        expect(api.post(path, club, payload, headers=rkey), status, code)
        with shared_stack.engine.connect() as conn:
            kept = conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = :k"),
                                {"k": rkey["Idempotency-Key"]}).scalar()
        assert kept == 0, (path, code)
        retried = api.post(path, club, payload, headers=rkey)
        expect(retried, status, code)
        assert "idempotent-replayed" not in retried.headers

    for bad_key in ("", "k" * 201):
        expect(api.post("/v1/hours", club, body, headers={"Idempotency-Key": bad_key}), 400,
               "invalid_idempotency_key")
    assert api.balance(volunteer_id)["available"] == "1.00"


def test_a_key_is_the_credentials_however_the_header_is_spelt_and_a_dead_claim_expires(
        shared_stack: Stack, api: Api, world: World) -> None:
    club = world.org(World.CLUB)
    volunteer_id, _ = world.volunteer("idem-case")
    body = world.hours(volunteer_id, World.CLUB, 30)
    key = str(uuid.uuid4())
    first = api.accepted(api.post("/v1/hours", club, body, headers={"Idempotency-Key": key}))
    _settled(shared_stack, key)
    spelt = api.http.post("/v1/hours", json=body, headers={"Authorization": f"bearer   {club}", "Idempotency-Key": key})
    assert spelt.status_code == 202 and spelt.json()["event_id"] == first
    assert spelt.headers["idempotent-replayed"] == "true"

    # A process that died after claiming a key left it without an answer: within a minute a repeat is told to
    # wait; after it, the repeat is decided again, with the same event id, which the ledger applies once.
    dead = str(uuid.uuid4())
    api.accepted(api.post("/v1/hours", club, {**body, "minutes": 45}, headers={"Idempotency-Key": dead}))
    _settled(shared_stack, dead)
    with shared_stack.engine.begin() as conn:
        conn.execute(text("UPDATE idempotency_keys SET status_code = NULL, response = NULL WHERE key = :k"),
                     {"k": dead})
    expect(api.post("/v1/hours", club, {**body, "minutes": 45}, headers={"Idempotency-Key": dead}), 409,
           "idempotency_in_progress")
    with shared_stack.engine.begin() as conn:
        conn.execute(text("UPDATE idempotency_keys SET created_at = now() - interval '61 seconds' WHERE key = :k"),
                     {"k": dead})
    retried = api.post("/v1/hours", club, {**body, "minutes": 45}, headers={"Idempotency-Key": dead})
    assert retried.status_code == 202 and "idempotent-replayed" not in retried.headers
    outcome = api.applied(retried.json()["event_id"], club)
    assert outcome["status"] == "applied"
    with shared_stack.engine.connect() as conn:
        logs = conn.execute(text("SELECT count(*) FROM hours_logs WHERE volunteer_id = :v AND minutes = 45"),
                            {"v": volunteer_id}).scalar()
    assert logs == 1


def test_an_answered_key_is_never_in_progress(api: Api, world: World) -> None:
    """A client that got its answer and sends the same request again must get that answer, never 'in progress'."""
    club = world.org(World.CLUB)
    logged = api.applied(api.accepted(api.post("/v1/hours", club, world.hours(world.face, World.CLUB, 15))), club)
    api.applied(api.accepted(api.post(f"/v1/hours/{logged['event_id']}/approve", club)), club)
    path = f"/v1/hours/{logged['event_id']}/approve"  # refused at once, for good (409): kept and replayed
    for _ in range(200):
        key = {"Idempotency-Key": str(uuid.uuid4())}
        expect(api.post(path, club, headers=key), 409, "already_decided")
        repeat = api.post(path, club, headers=key)
        expect(repeat, 409, "already_decided")
        assert repeat.headers["idempotent-replayed"] == "true"


def test_a_request_without_a_valid_token_stores_no_idempotency_key(shared_stack: Stack, api: Api,
                                                                   world: World) -> None:
    key = str(uuid.uuid4())
    for token in ("tc_not-a-token", "tc_another-bad-one"):
        expect(api.post("/v1/hours", token, world.hours(world.face, World.CLUB), headers={"Idempotency-Key": key}), 401,
               "invalid_token")
    with shared_stack.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = :k"), {"k": key}).scalar()
    assert stored == 0, "an unauthenticated caller wrote to idempotency_keys"


# --- errors that are not about a resource -------------------------------------------------------------------------


def test_unknown_paths_and_methods_answer_json_errors(api: Api) -> None:
    expect(api.get("/v1/nothing-here", None), 404, "not_found")
    expect(api.get("/v1/nothing-here", api.admin), 404, "not_found")
    expect(api.post("/v2/hours", api.admin, {}), 404, "not_found")
    expect(api.request("DELETE", "/v1/organisations", api.admin), 405, "method_not_allowed")
    expect(api.request("PUT", "/v1/hours", api.admin), 405, "method_not_allowed")


TEXT_WITH_A_CONTROL_CHARACTER = "Food\x01bank"


@pytest.mark.parametrize(("path", "body"), [
    pytest.param("/v1/hours", {"activity": TEXT_WITH_A_CONTROL_CHARACTER}, id="hours-activity-control-char"),
    pytest.param("/v1/hours/{log}/reject", {"reason": TEXT_WITH_A_CONTROL_CHARACTER}, id="reject-reason-control-char"),
    pytest.param("/v1/hours", {"date": "0"}, id="hours-date-zero"),
    pytest.param("/v1/hours", {"date": 20260101}, id="hours-date-number"),
    pytest.param("/v1/organisations", {"name": TEXT_WITH_A_CONTROL_CHARACTER}, id="organisation-name-control-char"),
    pytest.param("/v1/volunteers", {"seb_detail": TEXT_WITH_A_CONTROL_CHARACTER}, id="volunteer-seb-detail-words"),
    pytest.param("/v1/volunteers", {"display_name": "Ana\x00Lopez"}, id="volunteer-name-nul"),
    pytest.param("/v1/opportunities", {"title": TEXT_WITH_A_CONTROL_CHARACTER}, id="opportunity-title"),
    pytest.param("/v1/opportunities", {"starts_at": "2027-01-05T10:00:00"}, id="opportunity-naive-starts-at"),
    pytest.param("/v1/opportunities", {"starts_at": 1767225600}, id="opportunity-starts-at-number"),
    pytest.param("/v1/opportunities", {"cost": "1000000.01"}, id="opportunity-cost-above-event-maximum"),
    pytest.param("/v1/redemptions", {"amount": "1000000.01"}, id="redemption-above-event-maximum"),
    pytest.param("/v1/gifts", {"amount": "1000000.01"}, id="gift-above-event-maximum"),
    pytest.param("/v1/gifts", {"amount": "123456789.00"}, id="gift-far-above-event-maximum"),
])
def test_input_the_event_model_refuses_is_a_422_not_a_500(api: Api, world: World, path: str,
                                                          body: dict[str, Any]) -> None:
    """What the event (or PostgreSQL) would refuse is refused at the door: 422 in the error shape, never a 500."""
    ana, ana_token = world.volunteer(f"bad-{uuid.uuid4().hex[:8]}")
    bob, _ = world.volunteer(f"bad-{uuid.uuid4().hex[:8]}")
    valid: dict[str, tuple[str, dict[str, Any]]] = {
        "/v1/hours": (world.org(World.CLUB), world.hours(ana, World.CLUB)),
        "/v1/organisations": (api.admin, {"id": f"bad-{uuid.uuid4().hex[:8]}", "name": "x", "area": AREA,
                                          "kinds": ["community"]}),
        "/v1/volunteers": (api.admin, {"display_name": "x", "area": AREA, "consent_stats": True}),
        "/v1/opportunities": (world.org(World.LIDO), {"title": "x", "category": "sport", "cost": "1", "area": AREA}),
        "/v1/redemptions": (ana_token, {"partner_id": World.LIDO, "amount": "1"}),
        "/v1/gifts": (ana_token, {"to_volunteer_id": bob, "amount": "1"}),
        "/v1/hours/{log}/reject": (world.org(World.CLUB), {}),
    }
    token, base = valid[path]
    if "{log}" in path:
        logged = api.post("/v1/hours", token, world.hours(ana, World.CLUB))
        path = path.replace("{log}", api.applied(api.accepted(logged), token)["event_id"])
    # A fresh connection: after a 500 uvicorn drops the connection, which must not break the shared client.
    response = httpx.post(api.url + path, json={**base, **body}, timeout=30,
                          headers={"Authorization": f"Bearer {token}", "Connection": "close"})
    status, code = error_code(response)
    assert status == 422 and code in ({"invalid_request", "invalid_amount"} if "amount" in body or "cost" in body
                                      else {"invalid_request"}), response.text


# --- the broker away ---------------------------------------------------------------------------------------------


def _hours_body_for_new_volunteer(api: Api, world: World, tag: str) -> dict[str, Any]:
    volunteer_id, _ = world.volunteer(f"{tag}-{uuid.uuid4().hex[:6]}")
    return world.hours(volunteer_id, World.CLUB)


def _kill(broker: EmbeddedBroker) -> None:
    """The broker dies at once (SIGKILL by its pid), as a crashed or unreachable broker would; stop() cleans up."""
    pid, port = broker.pid, broker.port
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise AssertionError("the killed broker still accepts connections")


def _key_claimed(stack: Stack, key: str) -> bool:
    with stack.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = :k"), {"k": key}).scalar() == 1


def test_a_broker_lost_after_start_up_gives_503_and_no_half_written_registry(
        shared_stack: Stack, api: Api, world: World, side_apis: SideApis) -> None:
    """A second API on a broker of its own, which is then stopped: writes answer 503 within the publish timeout."""
    side_apis.lonely.wait_answering("/readyz", 200, timeout=60)
    lonely = Api(side_apis.lonely.url, ADMIN_TOKEN, timeout=60)
    club = world.org(World.CLUB)
    body = _hours_body_for_new_volunteer(api, world, "lost")
    try:
        # Delivered to a broker no worker reads: pending, as the shared database tells through the main API.
        pending = lonely.accepted(lonely.post("/v1/hours", club, body))
        assert api.get(f"/v1/events/{pending}", club).json()["status"] == "pending"

        _kill(side_apis.lonely_broker)
        stopped = time.monotonic()
        key = str(uuid.uuid4())
        reference = f"lost-reg-{uuid.uuid4().hex[:6]}"
        answers: dict[str, tuple[httpx.Response, float]] = {}

        def timed(name: str, path: str, token: str, payload: dict[str, Any], headers: dict[str, str]) -> None:
            response = lonely.post(path, token, payload, headers=headers)
            answers[name] = (response, time.monotonic() - stopped)

        writes = [
            threading.Thread(target=timed, args=("hours", "/v1/hours", club, body, {"Idempotency-Key": key})),
            threading.Thread(target=timed, args=("volunteer", "/v1/volunteers", club, {
                "reference": reference, "display_name": "x", "area": AREA, "consent_stats": True}, {})),
        ]
        for thread in writes:
            thread.start()
        wait_until(lambda: _key_claimed(shared_stack, key), 10, "the first request to claim its Idempotency-Key",
                   interval=0.05)
        expect(lonely.post("/v1/hours", club, body, headers={"Idempotency-Key": key}), 409, "idempotency_in_progress")
        time.sleep(max(0.0, stopped + 2.2 - time.monotonic()))  # readiness caches the broker check for 2 s
        not_ready = lonely.get("/readyz", None)
        assert not_ready.status_code == 503
        assert not_ready.json() == {"status": "not_ready", "database": True, "broker": False}
        assert lonely.get("/healthz", None).status_code == 200
        for thread in writes:
            thread.join(timeout=60)
        for name, (response, seconds) in answers.items():
            expect(response, 503, "broker_unavailable")
            assert seconds < 8, f"{name}: 503 after {seconds:.1f} s; the publish timeout is 5 s"

        # A 503 is not kept: the key is free again (another body would otherwise be 409 idempotency_key_reused).
        wait_until(lambda: not _key_claimed(shared_stack, key), 10, "the key of a 503 to be released", interval=0.05)
        unknown = {**body, "volunteer_id": "nobody"}
        expect(lonely.post("/v1/hours", club, unknown, headers={"Idempotency-Key": key}), 404, "unknown_volunteer")
        # A registry write whose announcement failed is not committed either: no member under that reference.
        members = api.get(f"/v1/organisations/{World.CLUB}/members", club).json()
        assert reference not in {m["reference"] for m in members}
    finally:
        lonely.close()


def test_an_api_started_without_a_broker_answers_503_not_a_hang(api: Api, world: World,
                                                                  side_apis: SideApis) -> None:
    body = _hours_body_for_new_volunteer(api, world, "dead")
    process = side_apis.brokerless
    process.wait_answering("/healthz", 200, timeout=30)
    not_ready = httpx.get(process.url + "/readyz", timeout=10)
    assert not_ready.status_code == 503 and not_ready.json()["broker"] is False
    started = time.monotonic()
    response = httpx.post(process.url + "/v1/hours", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {world.org(World.CLUB)}"})
    elapsed = time.monotonic() - started
    expect(response, 503, "broker_unavailable")
    assert elapsed < 12, f"503 after {elapsed:.1f} s"


def test_a_holder_lists_and_revokes_their_own_token(api: Api) -> None:
    """The full matrix of who may list and revoke is tests/e2e/test_tokens.py; here each route answers 2xx."""
    lead = api.token("lead")
    listed = api.get("/v1/tokens", lead)
    assert listed.status_code == 200, listed.text
    (row,) = listed.json()["tokens"]
    assert row["role"] == "lead" and row["revoked_at"] is None and "token" not in row
    assert api.request("DELETE", f"/v1/tokens/{row['id']}", lead).status_code == 204


# --- corrections with reasons, and the audit log (docs/design.md §5.14) ---------------------------------------------


def test_an_approval_is_corrected_once_with_its_reason_on_the_statement_and_in_the_audit_log(
        shared_stack: Stack, api: Api, world: World) -> None:
    club = world.org(World.CLUB)
    volunteer_id, token = world.volunteer("fix-ana")
    logged = api.accepted(api.post("/v1/hours", club, world.hours(volunteer_id, World.CLUB, 120)))
    api.applied(logged, club)
    approval = api.accepted(api.post(f"/v1/hours/{logged}/approve", club))
    api.applied(approval, club)
    assert api.balance(volunteer_id)["available"] == "2.00"

    why = "Ana was not on the rota that day: approved by mistake"
    for who in (token, world.lead, world.org(World.AUTO), world.org(World.LIDO)):  # not theirs to correct
        expect(api.post(f"/v1/entries/{approval}/reverse", who, {"reason": why}), 403, "forbidden")
    expect(api.post(f"/v1/entries/{approval}/reverse", None, {"reason": why}), 401, "unauthenticated")
    expect(api.post(f"/v1/entries/{approval}/reverse", club, {"reason": ""}), 422, "invalid_request")
    expect(api.post(f"/v1/entries/{approval}/reverse", club, {"reason": why, "reason_code": "oops"}), 422,
           "invalid_request")
    expect(api.post(f"/v1/entries/{uuid.uuid4()}/reverse", club, {"reason": why}), 404, "unknown_entry")

    corrected = api.accepted(api.post(f"/v1/entries/{approval}/reverse", club,
                                      {"reason": why, "reason_code": "approved_in_error"}))
    outcome = api.applied(corrected, club)
    assert isinstance(outcome["entry_id"], int)
    assert api.balance(volunteer_id)["available"] == "0.00"
    expect(api.post(f"/v1/entries/{approval}/reverse", club, {"reason": why}), 409, "already_reversed")
    expect(api.post(f"/v1/entries/{approval}/reverse", api.admin, {"reason": why}), 409, "already_reversed")
    expect(api.post(f"/v1/entries/{corrected}/reverse", api.admin, {"reason": why}), 409, "not_reversible")

    items = api.get(f"/v1/volunteers/{volunteer_id}/statement", token).json()["items"]
    assert [(i["kind"], i["amount"], i["related_event_id"], i["reason_code"], i["reason"]) for i in items] == [
        ("entry_reversed", "-2.00", approval, "approved_in_error", why),
        ("hours_approved", "2.00", None, None, None)]

    # The audit log: for admins only; ids and codes, never the reason's words.
    for who in (club, token, world.lead):
        expect(api.get("/v1/audit", who), 403, "forbidden")
    expect(api.get("/v1/audit.csv", world.lead), 403, "forbidden")
    expect(api.get("/v1/audit?action=nothing", api.admin), 422, "unknown_action")
    found = api.get(f"/v1/audit?action=entry_correction_requested&subject=entry:{approval}", api.admin)
    assert found.status_code == 200, found.text
    (row,) = found.json()["items"]
    assert (row["actor"], row["event_id"], row["detail"]) == (org_actor(World.CLUB), corrected,
                                                              {"reason_code": "approved_in_error"})
    assert why not in found.text
    csv_text = api.get(f"/v1/audit.csv?subject=entry:{approval}", api.admin)
    assert csv_text.status_code == 200 and csv_text.headers["content-type"].startswith("text/csv")
    assert corrected in csv_text.text and why not in csv_text.text
    exported = api.get(f"/v1/volunteers/{volunteer_id}/export", token).json()["ledger"]
    assert [row["why_corrected"] for row in exported if row["kind"] == "entry_reversed"] == [why]
    with shared_stack.engine.connect() as conn:  # nothing of the words on the event, all of them in PostgreSQL
        kept = conn.execute(text("SELECT reason, requested_by FROM corrections WHERE event_id = :e"),
                            {"e": corrected}).one()
    assert tuple(kept) == (why, org_actor(World.CLUB))


@pytest.mark.parametrize(("path", "params"), [
    ("/v1/stats/participation", {"from": "0001-01-01"}), ("/v1/stats/participation", {"to": "2101-01-01"}),
    ("/v1/hours", {"org_id": World.CLUB, "from": "1899-12-31"}), ("/v1/audit", {"to": "9999-12-31"}),
])
def test_a_day_outside_1900_to_2100_in_a_query_is_a_422_not_a_500(api: Api, world: World, path: str,
                                                                 params: dict[str, str]) -> None:
    expect(api.get(path, api.admin, params=params), 422, "invalid_request")


def test_an_admin_corrects_a_gift_and_the_acts_of_admins_are_audited(api: Api, world: World) -> None:
    giver, giver_token = world.volunteer("fix-gift-a")
    taker, _ = world.volunteer("fix-gift-b")
    world.earn(giver, 60)
    gift = api.accepted(api.post("/v1/gifts", giver_token, {"to_volunteer_id": taker, "amount": "1"}))
    api.applied(gift, giver_token)
    expect(api.post(f"/v1/entries/{gift}/reverse", giver_token, {"reason": "wrong person"}), 403, "forbidden")
    expect(api.post(f"/v1/entries/{gift}/reverse", world.org(World.AUTO), {"reason": "wrong person"}), 403,
           "forbidden")
    corrected = api.accepted(api.post(f"/v1/entries/{gift}/reverse", api.admin,
                                      {"reason": "sent to the wrong person", "reason_code": "made_by_mistake"}))
    api.applied(corrected, api.admin)
    assert api.balance(giver)["available"] == "1.00" and api.balance(taker)["available"] == "0.00"

    token_id = api.get("/v1/tokens", api.admin).json()["tokens"][-1]["id"]
    assert api.request("DELETE", f"/v1/tokens/{token_id}", api.admin).status_code == 204
    acts = {(r["action"], r["subject"]) for r in api.get("/v1/audit?limit=500", api.admin).json()["items"]}
    assert {("entry_correction_requested", f"entry:{gift}"), ("token_revoked", f"token:{token_id}"),
            ("token_issued", f"token:{token_id}"), ("membership_started", f"volunteer:{giver}")} <= acts
    page = api.get("/v1/audit?limit=1", api.admin).json()
    older = api.get(f"/v1/audit?limit=1&before={page['next_before']}", api.admin).json()
    assert older["items"][0]["id"] < page["items"][0]["id"]


# --- every documented endpoint was exercised (keep this test last) ------------------------------------------------


# --- the approval queue, bulk decisions, group logs and exports (docs/design.md §5.12) ----------------------------


def _logged(api: Api, token: str, body: dict[str, Any]) -> str:
    """A log the worker applied: its event id."""
    return str(api.applied(api.accepted(api.post("/v1/hours", token, body)), token)["event_id"])


def _queue(api: Api, token: str, **params: Any) -> dict[str, Any]:
    response = api.get("/v1/hours", token, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_queue_lists_an_organisations_own_logs_with_their_status_page_by_page(api: Api, world: World) -> None:
    club, hub = world.org(World.CLUB), world.org(World.HUB)
    volunteer_id, token = world.volunteer("q-ana")
    approved = _logged(api, club, world.hours(volunteer_id, World.CLUB, 90, date=(TODAY - timedelta(days=3)).isoformat()))
    rejected = _logged(api, club, world.hours(volunteer_id, World.CLUB, 30, date=(TODAY - timedelta(days=2)).isoformat()))
    waiting = _logged(api, club, world.hours(volunteer_id, World.CLUB, 45, activity="Sorting tins",
                                             category="food_and_essentials"))
    hubs = _logged(api, hub, world.hours(volunteer_id, World.HUB, 20))
    api.applied(api.accepted(api.post(f"/v1/hours/{approved}/approve", club)), club)
    api.applied(api.accepted(api.post(f"/v1/hours/{rejected}/reject", club, {"reason": "twice"})), club)

    mine = _queue(api, club, volunteer_id=volunteer_id)
    assert (mine["total"], mine["page"], mine["per_page"]) == (3, 1, 50)
    assert [(i["log_event_id"], i["status"], i["minutes"], i["credits"]) for i in mine["items"]] == [
        (approved, "approved", 90, "1.50"), (rejected, "rejected", 30, "0.50"), (waiting, "pending", 45, "0.75")]
    last = mine["items"][2]
    assert (last["volunteer_id"], last["org_id"], last["date"], last["category"], last["activity"],
            last["decided_at"]) == (volunteer_id, World.CLUB, YESTERDAY, "food_and_essentials", "Sorting tins", None)
    assert mine["items"][0]["decided_at"] is not None
    assert [i["log_event_id"] for i in _queue(api, club, volunteer_id=volunteer_id, status="pending")["items"]] == [
        waiting]
    span = _queue(api, club, volunteer_id=volunteer_id, **{"from": (TODAY - timedelta(days=2)).isoformat(),
                                                           "to": (TODAY - timedelta(days=2)).isoformat()})
    assert [i["log_event_id"] for i in span["items"]] == [rejected]
    second = _queue(api, club, volunteer_id=volunteer_id, page=2, per_page=2)
    assert (second["total"], [i["log_event_id"] for i in second["items"]]) == (3, [waiting])

    # One organisation never sees another's logs; an admin sees any, one organisation's or all.
    assert [i["log_event_id"] for i in _queue(api, hub, volunteer_id=volunteer_id)["items"]] == [hubs]
    assert all(i["org_id"] == World.HUB for i in _queue(api, hub, per_page=200)["items"])
    expect(api.get("/v1/hours", hub, params={"org_id": World.CLUB}), 403, "forbidden")
    assert _queue(api, hub, org_id=World.HUB)["total"] == _queue(api, hub)["total"]
    assert _queue(api, api.admin, org_id=World.CLUB, volunteer_id=volunteer_id)["total"] == 3
    assert _queue(api, api.admin, volunteer_id=volunteer_id)["total"] == 4
    for who in (world.lead, token):
        expect(api.get("/v1/hours", who), 403, "forbidden")
    expect(api.get("/v1/hours", None), 401, "unauthenticated")
    expect(api.get("/v1/hours", club, params={"status": "maybe"}), 422, "invalid_status")
    expect(api.get("/v1/hours", club, params={"from": "03/12/2026"}), 422, "invalid_request")
    expect(api.get("/v1/hours", club, params={"from": YESTERDAY, "to": "2020-01-01"}), 422, "invalid_period")
    expect(api.get("/v1/hours", club, params={"per_page": 201}), 422, "invalid_request")


def test_two_hundred_logs_are_approved_in_one_call_each_its_own_event(api: Api, world: World) -> None:
    club = world.org(World.CLUB)
    volunteers = [world.volunteer(f"bulk-{n}", member_of=(World.CLUB,))[0] for n in range(4)]
    logged = [api.accepted(api.post("/v1/hours", club, world.hours(volunteer_id, World.CLUB, 5)))
              for volunteer_id in volunteers for _ in range(50)]
    for event_id in logged:
        api.applied(event_id, club)
    waiting = {i["log_event_id"] for v in volunteers
               for i in _queue(api, club, volunteer_id=v, status="pending", per_page=200)["items"]}
    assert waiting == set(logged)

    answer = api.post("/v1/hours/approve", club, {"log_event_ids": logged})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["refused"]) == (200, 0)
    assert [o["log_event_id"] for o in body["outcomes"]] == logged  # in the order asked
    decisions = [o["event_id"] for o in body["outcomes"]]
    assert all(o["outcome"] == "accepted" and o["code"] is None for o in body["outcomes"])
    assert len(set(decisions)) == 200 and not set(decisions) & set(logged)
    for event_id in decisions:
        assert isinstance(api.applied(event_id, club)["entry_id"], int)
    for volunteer_id in volunteers:
        assert api.balance(volunteer_id)["available"] == "4.00"  # 50 logs of 5 minutes, 0.08 each
        assert _queue(api, club, volunteer_id=volunteer_id, status="approved")["total"] == 50


def test_a_bulk_decision_reports_each_refusal_by_its_log(api: Api, world: World) -> None:
    club, hub = world.org(World.CLUB), world.org(World.HUB)
    volunteer_id, token = world.volunteer("bulk-mix")
    good, decided, later = (_logged(api, club, world.hours(volunteer_id, World.CLUB, 10)) for _ in range(3))
    theirs = _logged(api, hub, world.hours(volunteer_id, World.HUB, 10))
    api.applied(api.accepted(api.post(f"/v1/hours/{decided}/approve", club)), club)
    unknown = str(uuid.uuid4())

    answer = api.post("/v1/hours/reject", club, {"log_event_ids": [good, decided, unknown, theirs, good],
                                                "reason": "not on the rota"})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["refused"]) == (1, 3)
    by_log = {o["log_event_id"]: o for o in body["outcomes"]}
    assert list(by_log) == [good, decided, unknown, theirs]  # a log named twice is decided once
    assert by_log[good]["outcome"] == "accepted"
    assert {log: (o["outcome"], o["code"]) for log, o in by_log.items() if log != good} == {
        decided: ("refused", "already_decided"), unknown: ("refused", "unknown_log"), theirs: ("refused", "forbidden")}
    assert all(by_log[log]["event_id"] is None and by_log[log]["message"] for log in (decided, unknown, theirs))
    assert api.applied(by_log[good]["event_id"], club)["entry_id"] is None

    nothing = api.post("/v1/hours/approve", club, {"log_event_ids": [decided, unknown]})
    assert nothing.status_code == 200 and nothing.json()["accepted"] == 0, nothing.text  # nothing to follow
    expect(api.post("/v1/hours/reject", club, {"log_event_ids": [later]}), 422, "reason_required")
    expect(api.post("/v1/hours/reject", club, {"log_event_ids": [later], "reason": "  "}), 422, "reason_required")
    expect(api.post("/v1/hours/approve", club, {"log_event_ids": [str(uuid.uuid4()) for _ in range(501)]}), 422,
           "too_many")
    expect(api.post("/v1/hours/approve", club, {"log_event_ids": []}), 422, "invalid_request")
    expect(api.post("/v1/hours/approve", club, {"log_event_ids": ["not-a-uuid"]}), 422, "invalid_request")
    for path in ("/v1/hours/approve", "/v1/hours/reject"):
        expect(api.post(path, None, {"log_event_ids": [later], "reason": "x"}), 401, "unauthenticated")
        for who in (world.lead, token):
            expect(api.post(path, who, {"log_event_ids": [later], "reason": "x"}), 403, "forbidden")
    admin = api.post("/v1/hours/approve", api.admin, {"log_event_ids": [later]})
    assert admin.status_code == 202 and admin.json()["accepted"] == 1, admin.text
    api.applied(admin.json()["outcomes"][0]["event_id"])
    assert _queue(api, club, volunteer_id=volunteer_id, status="pending")["total"] == 0


def test_a_group_log_logs_each_volunteer_and_approves_them_together(api: Api, world: World) -> None:
    club = world.org(World.CLUB)
    ana, _ = world.volunteer("grp-ana", member_of=(World.CLUB, World.AUTO))
    ben, ben_token = world.volunteer("grp-ben", member_of=(World.CLUB,))
    outsider, _ = world.volunteer("grp-out", member_of=(World.HUB,))
    long_day = _logged(api, club, world.hours(ben, World.CLUB, 23 * 60))
    api.applied(api.accepted(api.post(f"/v1/hours/{long_day}/approve", club)), club)  # Ben gave 23 hours that day
    group = {"org_id": World.CLUB, "volunteer_ids": [ana, ben, outsider, "nobody"], "date": YESTERDAY,
             "minutes": 120, "activity": "Litter pick", "category": "environment", "approve": True}

    answer = api.post("/v1/hours/group", club, group)
    assert answer.status_code == 202, answer.text
    outcomes = {o["volunteer_id"]: o for o in answer.json()["outcomes"]}
    assert list(outcomes) == [ana, ben, outsider, "nobody"]
    assert outcomes[ana]["outcome"] == "approval_sent" and outcomes[ana]["code"] is None
    assert isinstance(api.applied(outcomes[ana]["approval_event_id"], club)["entry_id"], int)
    assert api.balance(ana)["available"] == "2.00"
    # Ben's log is applied, and its approval refused at once by the worker's own rule: 25 hours in a day.
    assert (outcomes[ben]["outcome"], outcomes[ben]["code"], outcomes[ben]["approval_event_id"]) == (
        "not_approved", "too_many_hours", None)
    assert api.applied(outcomes[ben]["log_event_id"], club)["entry_id"] is None
    assert (outcomes[outsider]["outcome"], outcomes[outsider]["code"], outcomes[outsider]["log_event_id"]) == (
        "refused", "not_a_member", None)
    assert (outcomes["nobody"]["outcome"], outcomes["nobody"]["code"]) == ("refused", "unknown_volunteer")
    logged = _queue(api, club, volunteer_id=ana)["items"]
    assert [(i["log_event_id"], i["activity"], i["category"], i["status"]) for i in logged] == [
        (outcomes[ana]["log_event_id"], "Litter pick", "environment", "approved")]

    waiting = api.post("/v1/hours/group", club, {**group, "volunteer_ids": [ana], "minutes": 30, "approve": False})
    assert waiting.status_code == 202 and waiting.json()["outcomes"][0]["outcome"] == "waiting_for_approval"
    auto = api.post("/v1/hours/group", world.org(World.AUTO), {**group, "org_id": World.AUTO, "volunteer_ids": [ana],
                                                               "minutes": 15, "approve": True})
    assert auto.status_code == 202 and auto.json()["outcomes"][0]["outcome"] == "approved_automatically", auto.text
    none = api.post("/v1/hours/group", club, {**group, "volunteer_ids": [outsider]})
    assert none.status_code == 200 and none.json()["outcomes"][0]["outcome"] == "refused"  # nothing produced
    expect(api.post("/v1/hours/group", world.org(World.HUB), group), 403, "forbidden")
    for who in (world.lead, ben_token):
        expect(api.post("/v1/hours/group", who, group), 403, "forbidden")
    expect(api.post("/v1/hours/group", None, group), 401, "unauthenticated")
    expect(api.post("/v1/hours/group", club, {**group, "volunteer_ids": []}), 422, "invalid_request")
    expect(api.post("/v1/hours/group", club, {**group, "volunteer_ids": [f"v-{n:012x}" for n in range(501)]}), 422,
           "too_many")
    expect(api.post("/v1/hours/group", club, {**group, "minutes": 0}), 422, "invalid_request")


def _xlsx_rows(content: bytes) -> list[list[Any]]:
    sheet = load_workbook(io.BytesIO(content)).active
    return [[cell for cell in row] for row in sheet.iter_rows()]


def test_an_organisations_hours_export_makes_formula_cells_inert_in_csv_and_excel(api: Api, world: World) -> None:
    club, hub = world.org(World.CLUB), world.org(World.HUB)
    volunteer_id, token = world.volunteer("exp-ana")
    formula = '=HYPERLINK("http://example.com","click")'
    hyperlink = _logged(api, club, world.hours(volunteer_id, World.CLUB, 60, activity=formula))
    plain = _logged(api, club, world.hours(volunteer_id, World.CLUB, 30, activity="@SUM(A1:A9)"))
    api.applied(api.accepted(api.post(f"/v1/hours/{plain}/approve", club)), club)
    _logged(api, hub, world.hours(volunteer_id, World.HUB, 15, activity="Hub only"))

    answer = api.get(f"/v1/organisations/{World.CLUB}/hours.csv", club, params={"volunteer_id": volunteer_id})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == f'attachment; filename="hours-{World.CLUB}.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(r["log_event_id"], r["status"], r["minutes"], r["credits"], r["activity"]) for r in rows] == [
        (hyperlink, "pending", "60", "1.00", "'" + formula), (plain, "approved", "30", "0.50", "'@SUM(A1:A9)")]
    assert "Hub only" not in answer.text  # another organisation's log
    pending = api.get(f"/v1/organisations/{World.CLUB}/hours.csv", club,
                      params={"volunteer_id": volunteer_id, "status": "pending"})
    assert [r["log_event_id"] for r in csv.DictReader(io.StringIO(pending.text))] == [hyperlink]

    workbook = api.get(f"/v1/organisations/{World.CLUB}/hours.xlsx", club, params={"volunteer_id": volunteer_id})
    assert workbook.status_code == 200 and workbook.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    cells = _xlsx_rows(workbook.content)
    assert [c.value for c in cells[0]] == list(rows[0])
    activity = [row[-1] for row in cells[1:]]
    assert [c.value for c in activity] == ["'" + formula, "'@SUM(A1:A9)"]
    assert all(c.data_type == "s" for c in activity), [c.data_type for c in activity]  # text, never a formula
    assert [c.value for c in cells[1][:2]] == [hyperlink, volunteer_id]

    for suffix in ("csv", "xlsx"):
        path = f"/v1/organisations/{World.CLUB}/hours.{suffix}"
        expect(api.get(path, None), 401, "unauthenticated")
        for who in (hub, world.lead, token):
            expect(api.get(path, who), 403, "forbidden")
        by_admin = api.get(path, api.admin, params={"volunteer_id": volunteer_id})
        assert by_admin.status_code == 200, by_admin.text
        if suffix == "xlsx":
            assert [row[0].value for row in _xlsx_rows(by_admin.content)[1:]] == [hyperlink, plain]
        else:
            assert by_admin.text == answer.text
        expect(api.get(path, club, params={"status": "maybe"}), 422, "invalid_status")


def test_a_partner_exports_its_redemptions_and_attended_bookings(api: Api, world: World) -> None:
    lido = world.org(World.LIDO)
    volunteer_id, token = world.volunteer("exp-rd")
    world.earn(volunteer_id, 300)
    redeemed = api.applied(api.accepted(api.post("/v1/redemptions", token, {"partner_id": World.LIDO,
                                                                            "amount": "0.75"})), token)["event_id"]
    booked = api.accepted(api.post("/v1/bookings", token, {"opportunity_id": World.SWIM}))
    api.applied(booked, token)
    attended = api.applied(api.accepted(api.post(f"/v1/bookings/{booked}/attend", lido)), lido)["event_id"]
    api.applied(api.accepted(api.post("/v1/redemptions", token, {"partner_id": World.ARTS, "amount": "1"})), token)

    answer = api.get(f"/v1/partners/{World.LIDO}/redemptions.csv", lido)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv"), answer.text
    rows = [r for r in csv.DictReader(io.StringIO(answer.text)) if r["volunteer_id"] == volunteer_id]
    assert [(r["kind"], r["event_id"], r["credits"], r["opportunity_id"], r["opportunity"], r["reversed"])
            for r in rows] == [("redemption", redeemed, "0.75", "", "", ""),
                               ("attended_booking", attended, "2.00", World.SWIM, World.SWIM, "")]
    assert all(re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", r["date"]) for r in rows)
    arts = api.get(f"/v1/partners/{World.ARTS}/redemptions.csv", world.org(World.ARTS))
    assert [r["kind"] for r in csv.DictReader(io.StringIO(arts.text)) if r["volunteer_id"] == volunteer_id] == [
        "redemption"]  # its own, and none of the lido's
    assert api.get(f"/v1/partners/{World.LIDO}/redemptions.csv", api.admin).text == answer.text
    expect(api.get(f"/v1/partners/{World.LIDO}/redemptions.csv", None), 401, "unauthenticated")
    for who in (world.org(World.ARTS), world.lead, token):
        expect(api.get(f"/v1/partners/{World.LIDO}/redemptions.csv", who), 403, "forbidden")


def test_a_leads_activity_export_is_pseudonymous_with_background_only_by_consent(api: Api, world: World) -> None:
    auto = world.org(World.AUTO)
    made = {}
    for name, consent in (("act-yes", True), ("act-no", False)):
        response = api.post("/v1/volunteers", api.admin, {
            "display_name": f"Vol {name}", "area": OTHER_AREA, "consent_stats": consent, "age_band": "25-34",
            "seb": "intermediate", "first_time_volunteer": True, "org_id": World.AUTO})
        assert response.status_code == 201, response.text
        made[name] = response.json()["id"]
    day = (TODAY - timedelta(days=4)).isoformat()
    for volunteer_id in made.values():
        for minutes in (30, 45):
            _logged(api, auto, world.hours(volunteer_id, World.AUTO, minutes, date=day, activity="Secret free text",
                                           category="befriending"))
    period = {"from": day, "to": day}

    answer = api.get("/v1/stats/activity.csv", world.lead, params=period)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv"), answer.text
    assert "Secret free text" not in answer.text and "Vol act-" not in answer.text
    assert not any(volunteer_id in answer.text for volunteer_id in made.values())
    rows = [r for r in csv.DictReader(io.StringIO(answer.text)) if r["area"] == OTHER_AREA
            and r["org_id"] == World.AUTO and r["category"] == "befriending"]
    by_person: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_person.setdefault(row["volunteer"], []).append(row)
    assert len(by_person) == 2 and all(len(logs) == 2 for logs in by_person.values())  # one pseudonym a person
    shown = sorted((r["age_band"], r["seb"], r["first_time_volunteer"]) for logs in by_person.values()
                   for r in logs[:1])
    assert shown == [("", "", ""), ("25-34", "intermediate", "yes")]  # the one who did not consent: nothing
    assert {(r["month"], r["minutes"]) for r in rows} == {(day[:7], "30"), (day[:7], "45")}
    again = api.get("/v1/stats/activity.csv", api.admin, params=period)
    assert again.status_code == 200 and not set(by_person) & {r["volunteer"] for r in csv.DictReader(
        io.StringIO(again.text))}  # a new key each export: two exports do not link
    expect(api.get("/v1/stats/activity.csv", None), 401, "unauthenticated")
    for who in (auto, world.volunteer("act-who")[1]):
        expect(api.get("/v1/stats/activity.csv", who), 403, "forbidden")
    expect(api.get("/v1/stats/activity.csv", world.lead, params={"from": day, "to": "2020-01-01"}), 422,
           "invalid_period")
    expect(api.get("/v1/stats/activity.csv", world.lead, params={"to": "0001-01-01"}), 422, "invalid_request")


def _request_samples(metrics_text: str) -> dict[tuple[str, str, str], float]:
    samples = {}
    pattern = re.compile(r'^timecredits_http_requests_total\{(.*)\} ([0-9.e+]+)$')
    for line in metrics_text.splitlines():
        match = pattern.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            samples[(labels["method"], labels["route"], labels["status"])] = float(match.group(2))
    return samples


# --- erasure of a volunteer (docs/design.md §5.15) -------------------------------------------------------------


def _text_columns_holding(engine: Any, *needles: str) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every text, varchar or jsonb column of every table where a needle is found."""
    found = []
    with engine.connect() as conn:
        columns = conn.execute(text(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' "
            "AND c.data_type IN ('text', 'character varying', 'jsonb', 'ARRAY') ORDER BY 1, 2")).all()
        assert len(columns) > 40, columns  # the search covers the whole schema, not a handful of tables
        for table, column in columns:
            for needle in needles:
                hit = conn.execute(text(f'SELECT 1 FROM "{table}" WHERE "{column}"::text ILIKE :n LIMIT 1'),
                                   {"n": f"%{needle}%"}).first()
                if hit is not None:
                    found.append((table, column, needle))
    return found


def _web_sign_in(api: Api, path: str, data: dict[str, str] | None = None) -> httpx.Response:
    """A sign-in form of the web app sent as a browser would: its pre-session token from the sign-in page."""
    with httpx.Client(base_url=api.url, timeout=30) as browser:
        page = browser.get("/app/sign-in")
        pre = re.search(r'name="pre_token" value="([^"]+)"', page.text)
        assert pre, page.text
        if data is None:
            return browser.get(path)
        return browser.post(path, data={"pre_token": pre.group(1), **data})


def test_an_admin_erases_a_volunteer_and_nothing_names_them_while_the_ledger_and_statistics_stay(
        shared_stack: Stack, api: Api, world: World) -> None:
    from ledger.pg.verify import verify_ledger
    from web.people import PersonRole, add_person, new_card, new_link, start_session

    mark = uuid.uuid4().hex[:8]
    name, email = f"Amina Begum{mark}", f"amina.{mark}@example.org"
    registered = api.post("/v1/volunteers", world.org(World.AUTO), {
        "display_name": name, "email": email, "area": AREA, "consent_stats": True, "age_band": "25-34",
        "seb": "intermediate", "seb_detail": "routine_manual_and_service", "reference": f"AB-{mark}"})
    assert registered.status_code == 201, registered.text
    volunteer_id = registered.json()["id"]
    for org in (World.CLUB, World.HUB):
        assert api.post(f"/v1/organisations/{org}/members", api.admin, {"volunteer_id": volunteer_id}).status_code == 201
    issued = api.post("/v1/tokens", api.admin, {"role": "volunteer", "volunteer_id": volunteer_id,
                                                "label": f"{name}'s phone"})
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    earned = [api.applied(api.accepted(api.post("/v1/hours", world.org(World.AUTO), world.hours(
        volunteer_id, World.AUTO, 60, activity=f"Lunch club with {name}"))), world.org(World.AUTO))
              for _ in range(2)]
    twice = api.accepted(api.post("/v1/hours", world.org(World.AUTO), world.hours(volunteer_id, World.AUTO, 60)))
    api.applied(twice, world.org(World.AUTO))
    fixed = api.accepted(api.post(f"/v1/entries/{twice}/reverse", api.admin,
                                  {"reason": f"{name} was logged twice", "reason_code": "duplicate"}))
    api.applied(fixed)
    world.spend_code(volunteer_id, token, World.LIDO)
    assert api.balance(volunteer_id)["available"] == "2.00" and len(earned) == 2
    person = add_person(shared_stack.engine, name, PersonRole.VOLUNTEER, email=email, volunteer_id=volunteer_id)
    card, link = new_card(shared_stack.engine, person.id), new_link(shared_stack.engine, person.id)
    session, _ = start_session(shared_stack.engine, person)
    assert _web_sign_in(api, f"/app/sign-in/link/{link}").status_code == 200  # the link works, until the erasure
    with httpx.Client(base_url=api.url, timeout=30, cookies={"tc_session": session}) as signed_in:
        assert signed_in.get("/app").status_code == 200
    stats = {"group_by": "area"}
    wait_until(lambda: _facts_of(shared_stack, volunteer_id) == 4, 60, "the statistics facts of their entries")
    before = api.get("/v1/stats/participation", world.lead, params=stats)
    assert before.status_code == 200, before.text
    assert _text_columns_holding(shared_stack.engine, name, email)  # the search finds them before

    # Only an admin erases; anyone else is refused with a code, and an unknown volunteer is 404.
    path = f"/v1/volunteers/{volunteer_id}"
    for who in (token, world.lead, world.org(World.AUTO), world.org(World.LIDO)):
        expect(api.request("DELETE", path, who), 403, "forbidden")
    expect(api.request("DELETE", path, None), 401, "unauthenticated")
    expect(api.request("DELETE", "/v1/volunteers/v-000000000000", api.admin), 404, "unknown_volunteer")
    expect(api.request("DELETE", "/v1/volunteers/not an id", api.admin), 422, "invalid_request")
    assert api.balance(volunteer_id, token)["available"] == "2.00"  # the refusals erased nothing

    erased = api.request("DELETE", path, api.admin)
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["volunteer_id"] == volunteer_id and body["kept"]
    assert {k: v for k, v in body["deleted"].items() if v} == {
        "profile": 1, "detailed_background": 1, "sign_in": 1, "sessions": 1, "sign_in_links": 1,
        "sign_in_cards": 1, "api_tokens": 1, "references": 1, "memberships": 3, "correction_reasons": 1,
        "hours_notes": 3, "spend_codes": 1}
    expect(api.request("DELETE", path, api.admin), 410, "volunteer_erased")

    assert _text_columns_holding(shared_stack.engine, name, email, f"Begum{mark}") == []
    assert verify_ledger(shared_stack.engine).ok
    assert api.get("/v1/stats/participation", world.lead, params=stats).json() == before.json()
    assert _facts_of(shared_stack, volunteer_id) == 4
    assert api.balance(volunteer_id)["available"] == "2.00"  # the pseudonymous account keeps its credits
    # Nothing signs them in again: their token, their card, their link, their session, their e-mail.
    expect(api.get(f"/v1/volunteers/{volunteer_id}/balance", token), 401, "token_revoked")
    assert _web_sign_in(api, "/app/sign-in/card", {"code": card}).status_code == 422
    assert _web_sign_in(api, f"/app/sign-in/link/{link}").status_code == 410
    with httpx.Client(base_url=api.url, timeout=30, cookies={"tc_session": session}) as signed_in:
        assert signed_in.get("/app").status_code in (302, 303)
    asked = _web_sign_in(api, "/app/sign-in/email", {"email": email})
    assert asked.status_code == 200, asked.text  # the same answer as for any address nobody has
    with shared_stack.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sign_in_links WHERE person_id = :p"),
                            {"p": person.id}).scalar() == 0
    # Nothing new is recorded for them, at once: hours, a gift to them, a token, their consent.
    expect(api.post("/v1/hours", world.org(World.AUTO), world.hours(volunteer_id, World.AUTO, 60)), 410,
           "volunteer_erased")
    giver, giver_token = world.volunteer("erase-giver")
    world.earn(giver, 60)
    expect(api.post("/v1/gifts", giver_token, {"to_volunteer_id": volunteer_id, "amount": "1"}), 410,
           "volunteer_erased")
    expect(api.post("/v1/tokens", api.admin, {"role": "volunteer", "volunteer_id": volunteer_id}), 410,
           "volunteer_erased")
    expect(api.request("PUT", f"/v1/volunteers/{volunteer_id}/consent", api.admin, {"consent_stats": False}), 410,
           "volunteer_erased")
    for who in (api.admin, world.org(World.CLUB)):  # neither a member again, nor asked to be one
        expect(api.post(f"/v1/organisations/{World.CLUB}/members", who, {"volunteer_id": volunteer_id}), 410,
               "volunteer_erased")
    found = api.get(f"/v1/audit?action=volunteer_erased&subject=volunteer:{volunteer_id}", api.admin).json()
    assert [(row["actor"], row["detail"]) for row in found["items"]] == [(admin_actor(None), {})], found


def _facts_of(stack: Stack, volunteer_id: str) -> int:
    with stack.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM stats_facts WHERE volunteer_id = :v"),
                                {"v": volunteer_id}).scalar_one())


def test_every_documented_endpoint_was_answered_with_a_success(api: Api) -> None:
    """From the API process's own counters: each (method, path) of the document answered 2xx in this module,
    and nothing answered 5xx (the broker tests use APIs of their own)."""
    documented = {(method.upper(), path) for path, item in api.get("/openapi.json", None).json()["paths"].items()
                  for method in item if method in ("get", "post", "put", "patch", "delete")}
    samples = _request_samples(api.get("/metrics", None).text)
    succeeded = {(method, route) for method, route, status in samples if status.startswith("2")}
    # Answers given before routing (idempotent replays, /openapi.json) are counted under route="unmatched".
    succeeded = {(method, route) for method, route in succeeded if route != "unmatched"}
    # The web app's pages, on the same process, are not the API's (docs/design.md §8); the erasure test signs in
    # through them to show that nothing signs an erased volunteer in.
    succeeded = {(method, route) for method, route in succeeded if route != "/app" and not route.startswith("/app/")}
    missing, undocumented = documented - succeeded, succeeded - documented
    assert not missing, f"documented endpoints no test called successfully (run the whole module): {sorted(missing)}"
    assert not undocumented, f"endpoints answered but not in the OpenAPI document: {sorted(undocumented)}"
    assert ("GET", "/metrics") in succeeded
    server_errors = {sample: n for sample, n in samples.items() if sample[2].startswith("5")}
    assert not server_errors, f"the module's API answered 5xx: {server_errors}"
