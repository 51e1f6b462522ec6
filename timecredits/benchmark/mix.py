"""The mixed workload of `timecredits bench soak` and `tests/e2e/test_load.py`: a realistic world made through
the API (organisations, volunteers who have earned credits, tokens of every role, opportunities, spend codes), and
the request mix its clients send: balance, statement, event-status, statistics and catalogue reads; idempotent
writes (hours, approvals, spends, gifts, bookings, cancellations, attendances), some replaying a key, some reusing a
key with another body, some invalid on their face. Every answer is checked against what its kind may get."""
from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from api.middleware import is_final
from timecredits.benchmark.mixload import Call, LoadResult, Template, run_each

AMOUNT = re.compile(r"^-?[0-9]+\.[0-9]{2}$")
"""Credits as the API shows them: a decimal string with exactly two places."""
VOLUNTEERS = 300
AREAS = ("E09000030", "E09000012", "E09000025")
AGE_BANDS = ("16-24", "25-34", "35-44", "45-54", "55-64", "65+")
SEBS = ("professional", "intermediate", "lower", "other")
TODAY = datetime.now(UTC).date()

CLUB, AUTO, GARDEN = "ld-club", "ld-auto", "ld-garden"  # community: approved by hand, automatically, automatically
LIDO, ARTS, HUB = "ld-lido", "ld-arts", "ld-hub"  # partners; the hub is community and partner, auto-approving
COMMUNITY = (CLUB, AUTO, GARDEN, HUB)  # every volunteer is a member of each
ORGANISATIONS = {
    CLUB: (["community"], AREAS[0], False),
    AUTO: (["community"], AREAS[0], True),
    GARDEN: (["community"], AREAS[1], True),
    LIDO: (["partner"], AREAS[0], False),
    ARTS: (["partner"], AREAS[1], False),
    HUB: (["community", "partner"], AREAS[2], True),
}
COMMUNITY = (CLUB, AUTO, GARDEN, HUB)
PARTNERS = (LIDO, ARTS, HUB)
OPPORTUNITIES = {  # id: (partner, cost, category)
    "ld-swim": (LIDO, "2", "sport"),
    "ld-gym": (LIDO, "1", "sport"),
    "ld-pottery": (ARTS, "1.5", "course"),
    "ld-cv": (HUB, "0.5", "training"),
}
REJECTION_REASONS = {"insufficient_credits", "already_decided", "booking_closed", "code_used", "too_many_hours"}
"""Why the worker may refuse a write of this mix: spends beyond a balance, decisions and bookings raced, a spend
code offered twice at once, a volunteer's day filled by two organisations at once."""


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


# --- checks of an answer ------------------------------------------------------------------------------------------


def error_check(codes: Mapping[int, frozenset[str]]) -> Callable[[httpx.Response], str | None]:
    """An error answer must be `{"error": {"code", "message"}}` with a code expected for its status."""

    def check(response: httpx.Response) -> str | None:
        if response.status_code < 400:
            return None
        body = response.json()
        if set(body) != {"error"} or set(body["error"]) != {"code", "message"} or not body["error"]["message"]:
            return f"not an error body: {body}"
        allowed = codes.get(response.status_code, frozenset())
        return None if body["error"]["code"] in allowed else f"code {body['error']['code']} not in {sorted(allowed)}"

    return check


def accepted_check(response: httpx.Response) -> str | None:
    if response.status_code != 202:
        return None
    body = response.json()
    return None if set(body) == {"event_id", "status"} and body["status"] == "pending" else f"not accepted: {body}"


def both(*checks: Callable[[httpx.Response], str | None]) -> Callable[[httpx.Response], str | None]:
    def check(response: httpx.Response) -> str | None:
        for one in checks:
            problem = one(response)
            if problem:
                return problem
        return None

    return check


def balance_check(response: httpx.Response) -> str | None:
    body = response.json()
    if not all(AMOUNT.match(body[k]) for k in ("balance", "held", "available")):
        return f"amounts not decimal strings: {body}"
    balance, held, available = (Decimal(body[k]) for k in ("balance", "held", "available"))
    if balance != held + available or held < 0 or available < 0:
        return f"balance is not held + available, or below zero: {body}"
    return None


def statement_check(response: httpx.Response) -> str | None:
    body = response.json()
    ids = [item["entry_id"] for item in body["items"]]
    return None if ids == sorted(ids, reverse=True) else f"statement not newest first: {ids}"


def event_check(response: httpx.Response) -> str | None:
    body = response.json()
    return None if body["status"] in ("pending", "applied", "rejected") else f"unknown status: {body}"


# --- the world ----------------------------------------------------------------------------------------------------


@dataclass
class Write:
    """A write that got its answer, kept to be sent again with the same key (a replay) or another body."""

    path: str
    token: str
    key: str
    body: dict[str, Any]
    status: int
    answer: bytes


@dataclass
class World:
    url: str
    admin: str
    admins: list[str] = field(default_factory=list)
    leads: list[str] = field(default_factory=list)
    orgs: dict[str, list[str]] = field(default_factory=dict)
    volunteers: dict[str, str] = field(default_factory=dict)  # id -> token
    accepted: dict[str, tuple[str, str]] = field(default_factory=dict)  # event id -> (kind, token that sent it)
    accepted_order: list[str] = field(default_factory=list)
    club_logs: list[str] = field(default_factory=list)
    bookings: list[tuple[str, str, str]] = field(default_factory=list)  # (event id, volunteer token, partner)
    #: Spend codes the volunteers made, by partner, not yet offered; and those offered once.
    codes: dict[str, list[str]] = field(default_factory=dict)
    used_codes: dict[str, list[str]] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)

    @property
    def volunteer_ids(self) -> list[str]:
        return list(self.volunteers)

    def org(self, rng: random.Random, org_id: str) -> str:
        return rng.choice(self.orgs[org_id])

    def reader(self, rng: random.Random, volunteer_id: str) -> str:
        """Who reads a volunteer's balance or statement: mostly themselves, else an organisation they are a member
        of, or an admin (a lead reads statistics, not balances)."""
        roll = rng.random()
        if roll < 0.75:
            return self.volunteers[volunteer_id]
        if roll < 0.95:
            return self.org(rng, rng.choice(COMMUNITY))
        return rng.choice(self.admins)

    def remember(self, kind: str, token: str) -> Callable[[httpx.Response], None]:
        def note(response: httpx.Response) -> None:
            if response.status_code == 202 and response.headers.get("idempotent-replayed") != "true":
                event_id = response.json()["event_id"]
                self.accepted[event_id] = (kind, token)
                self.accepted_order.append(event_id)

        return note

    # -- writes: each with a fresh Idempotency-Key, kept for replays --------------------------------------------
    def write(self, kind: str, path: str, token: str, body: dict[str, Any], codes: Mapping[int, frozenset[str]],
              then: Callable[[str], None] | None = None) -> Call:
        key = str(uuid.uuid4())
        remember = self.remember(kind, token)

        def on_response(response: httpx.Response) -> None:
            remember(response)
            if is_final(response.status_code, response.content):  # only a final answer is kept to replay
                self.writes.append(Write(path, token, key, body, response.status_code, response.content))
                if len(self.writes) > 2000:
                    del self.writes[:1000]
            if response.status_code == 202 and then is not None:
                then(response.json()["event_id"])

        return Call("POST", path, expect={202, *codes}, headers={**bearer(token), "Idempotency-Key": key}, json=body,
                    check=both(accepted_check, error_check(codes)), on_response=on_response)


def create_world(url: str, admin_token: str, volunteers: int = VOLUNTEERS) -> World:
    """Organisations, opportunities, `volunteers` volunteers with credits, and tokens of each role, through the API
    at `url`, as the admin of `admin_token`."""
    world = World(url, admin_token)
    rng = random.Random(6)
    admin = bearer(admin_token)

    def setup(calls: list[tuple[str, Call]], concurrency: int = 16) -> LoadResult:
        result = asyncio.run(run_each(url, calls, concurrency=concurrency))
        assert result.unexpected_count == 0 and not result.errors, "\n".join(result.unexpected)
        return result

    setup([("organisation", Call("POST", "/v1/organisations", {201}, admin, {
        "id": org_id, "name": f"Load {org_id}", "area": area, "kinds": kinds, "auto_approve": auto}))
        for org_id, (kinds, area, auto) in ORGANISATIONS.items()], concurrency=4)
    made: dict[int, str] = {}
    setup([("volunteer", Call("POST", "/v1/volunteers", {201}, admin, {
        "display_name": f"Volunteer {n}", "area": AREAS[n % len(AREAS)], "org_id": CLUB, "reference": f"ld-v{n:03d}",
        "age_band": rng.choice(AGE_BANDS), "seb": rng.choice(SEBS), "consent_stats": rng.random() < 0.9},
        on_response=lambda r, n=n: made.__setitem__(n, r.json()["id"]) if r.status_code == 201 else None))
        for n in range(volunteers)])
    volunteer_ids = [made[n] for n in range(volunteers)]
    setup([("member", Call("POST", f"/v1/organisations/{org_id}/members", {201}, admin, {"volunteer_id": v}))
           for v in volunteer_ids for org_id in COMMUNITY if org_id != CLUB])

    def token(body: dict[str, Any], into: Callable[[str], None]) -> tuple[str, Call]:
        return "token", Call("POST", "/v1/tokens", {201}, admin, body,
                             on_response=lambda r: into(r.json()["token"]) if r.status_code == 201 else None)

    calls = [token({"role": "admin", "label": "load admin"}, world.admins.append),
             *(token({"role": "lead"}, world.leads.append) for _ in range(3))]
    for org_id in ORGANISATIONS:
        world.orgs[org_id] = []
        calls += [token({"role": "org", "org_id": org_id}, world.orgs[org_id].append) for _ in range(2)]
    for volunteer_id in volunteer_ids:
        calls.append(token({"role": "volunteer", "volunteer_id": volunteer_id},
                           lambda t, v=volunteer_id: world.volunteers.__setitem__(v, t)))
    setup(calls)
    world.volunteers = dict(sorted(world.volunteers.items()))

    setup([("opportunity", Call("POST", "/v1/opportunities", {201}, bearer(world.orgs[partner][0]), {
        "id": opportunity_id, "title": f"Load {opportunity_id}", "category": category, "cost": cost,
        "area": ORGANISATIONS[partner][1], "starts_at": "2027-03-01T10:00:00Z"}))
        for opportunity_id, (partner, cost, category) in OPPORTUNITIES.items()], concurrency=4)

    # Credits earned: two to three auto-approved logs each (2 to 12 credits), plus logs the club has not decided.
    earned: list[tuple[str, Call]] = []
    for volunteer_id in volunteer_ids:
        for _ in range(rng.randint(2, 3)):
            org_id = rng.choice((AUTO, GARDEN, HUB))
            token_ = world.orgs[org_id][0]
            earned.append(("earn", Call("POST", "/v1/hours", {202}, bearer(token_), {
                "volunteer_id": volunteer_id, "org_id": org_id, "date": days_ago(rng.randint(1, 90)),
                "minutes": rng.choice((60, 120, 180, 240)), "activity": "Food bank"},
                on_response=world.remember("earn", token_))))
        if rng.random() < 0.3:
            earned.append(("club log", Call("POST", "/v1/hours", {202}, bearer(world.orgs[CLUB][0]), {
                "volunteer_id": volunteer_id, "org_id": CLUB, "date": days_ago(rng.randint(1, 60)), "minutes": 90,
                "activity": "Litter pick"}, on_response=lambda r: world.club_logs.append(r.json()["event_id"]))))
    setup(earned)

    # Spend codes the volunteers give the partners' front desks (docs/design.md §5.6): one payment each.
    for partner in PARTNERS:
        world.codes[partner], world.used_codes[partner] = [], []
    setup([("spend code", Call("POST", f"/v1/volunteers/{v}/spend-codes", {201}, bearer(world.volunteers[v]),
                               {"partner_id": partner, "max_amount": "3", "valid_minutes": 30},
                               on_response=lambda r, p=partner: world.codes[p].append(r.json()["code"])))
           for v in volunteer_ids for partner in PARTNERS if rng.random() < 0.5])
    return world


# --- the mix ------------------------------------------------------------------------------------------------------


NOT_FOUND = frozenset({"unknown_log", "unknown_booking"})


def templates(world: World) -> list[Template]:  # noqa: C901 - one small function a request kind
    volunteers = world.volunteer_ids

    def some_volunteer(rng: random.Random) -> str:
        return rng.choice(volunteers)

    def balance(rng: random.Random) -> Call:
        v = some_volunteer(rng)
        return Call("GET", f"/v1/volunteers/{v}/balance", {200}, bearer(world.reader(rng, v)), check=balance_check)

    def statement(rng: random.Random) -> Call:
        v = some_volunteer(rng)
        params: dict[str, Any] = {"limit": rng.choice((5, 20, 50))}
        if rng.random() < 0.2:
            params["before"] = rng.randint(1, 2000)
        return Call("GET", f"/v1/volunteers/{v}/statement", {200}, bearer(world.reader(rng, v)), params=params,
                    check=statement_check)

    def event_status(rng: random.Random) -> Call | None:
        accepted_ids = world.accepted_order
        if not accepted_ids:
            return None
        event_id = accepted_ids[-rng.randint(1, min(len(accepted_ids), 500))]  # mostly recent ones, as clients poll
        _, token = world.accepted[event_id]
        return Call("GET", f"/v1/events/{event_id}", {200}, bearer(token if rng.random() < 0.9 else world.admin),
                    check=event_check)

    def participation(rng: random.Random) -> Call:
        params = {"group_by": rng.choice(("month", "quarter", "org", "area", "age_band", "seb", "category"))}
        if rng.random() < 0.3:
            params["period"] = str(TODAY.year)
        return Call("GET", "/v1/stats/participation", {200}, bearer(rng.choice(world.leads + world.admins)),
                    params=params)

    def cold_spots(rng: random.Random) -> Call:
        return Call("GET", "/v1/stats/cold-spots", {200}, bearer(rng.choice(world.leads)))

    def catalogue(rng: random.Random) -> Call:
        params = {"partner_id": rng.choice(PARTNERS)} if rng.random() < 0.5 else None
        return Call("GET", "/v1/opportunities", {200}, bearer(world.volunteers[some_volunteer(rng)]), params=params)

    def log_hours(rng: random.Random) -> Call:
        org_id = rng.choice(COMMUNITY)
        then = world.club_logs.append if org_id == CLUB else None
        return world.write("log hours", "/v1/hours", world.org(rng, org_id), {
            "volunteer_id": some_volunteer(rng), "org_id": org_id, "date": days_ago(rng.randint(0, 90)),
            "minutes": rng.choice((30, 60, 90, 120, 180)), "activity": rng.choice(("Food bank", "Lunch club"))},
            {422: frozenset({"too_many_hours"})}, then)

    def decide(rng: random.Random) -> Call | None:
        if not world.club_logs:
            return None
        event_id = rng.choice(world.club_logs[-300:])
        verb = "approve" if rng.random() < 0.85 else "reject"
        body = {} if verb == "approve" else {"reason": "not on the rota"}
        return world.write(f"{verb} hours", f"/v1/hours/{event_id}/{verb}", world.org(rng, CLUB), body,
                           {404: NOT_FOUND, 409: frozenset({"already_decided"}), 422: frozenset({"too_many_hours"})})

    def spend(rng: random.Random) -> Call:
        amount = rng.choice(("0.25", "0.50", "1", "1.50", "3"))
        if rng.random() < 0.8:
            v = some_volunteer(rng)
            return world.write("spend", "/v1/redemptions", world.volunteers[v],
                               {"partner_id": rng.choice(PARTNERS), "amount": amount}, {})
        partner = rng.choice(PARTNERS)
        fresh, offered = world.codes[partner], world.used_codes[partner]
        if fresh and (not offered or rng.random() < 0.9):
            code = fresh.pop()
            offered.append(code)
        elif offered:
            code = rng.choice(offered)  # offered again: refused at once, or by the worker if the first is pending
        else:
            return world.write("spend (partner, no code)", "/v1/redemptions", world.org(rng, partner),
                               {"volunteer_id": some_volunteer(rng), "amount": amount},
                               {403: frozenset({"authorisation_required"})})
        return world.write("spend (partner)", "/v1/redemptions", world.org(rng, partner),
                           {"amount": amount, "spend_code": code}, {409: frozenset({"code_used"})})

    def gift(rng: random.Random) -> Call:
        sender, receiver = rng.sample(volunteers, 2)
        return world.write("gift", "/v1/gifts", world.volunteers[sender],
                           {"to_volunteer_id": receiver, "amount": rng.choice(("0.10", "0.50", "1"))}, {})

    def book(rng: random.Random) -> Call:
        v = some_volunteer(rng)
        opportunity_id = rng.choice(list(OPPORTUNITIES))
        token = world.volunteers[v]
        partner = OPPORTUNITIES[opportunity_id][0]
        return world.write("book", "/v1/bookings", token, {"opportunity_id": opportunity_id}, {},
                           lambda event_id: world.bookings.append((event_id, token, partner)))

    def settle_booking(rng: random.Random) -> Call | None:
        if not world.bookings:
            return None
        event_id, token, partner = rng.choice(world.bookings[-300:])
        if rng.random() < 0.5:
            return world.write("cancel booking", f"/v1/bookings/{event_id}/cancel", token, {}, {404: NOT_FOUND})
        return world.write("attend booking", f"/v1/bookings/{event_id}/attend", world.org(rng, partner), {},
                           {404: NOT_FOUND})

    def replay(rng: random.Random) -> Call | None:
        """The same key and body again: the first answer, byte for byte, marked as replayed."""
        if not world.writes:
            return None
        first = rng.choice(world.writes[-500:])

        def same(response: httpx.Response) -> str | None:
            if response.headers.get("idempotent-replayed") != "true" or response.content != first.answer:
                return f"not the first answer ({first.status} {first.answer[:200]!r})"
            return None

        return Call("POST", first.path, {first.status}, {**bearer(first.token), "Idempotency-Key": first.key},
                    json=first.body, check=same)

    def reuse(rng: random.Random) -> Call | None:
        """The same key with another body: 409."""
        if not world.writes:
            return None
        first = rng.choice(world.writes[-500:])
        return Call("POST", first.path, {409}, {**bearer(first.token), "Idempotency-Key": first.key},
                    json={**first.body, "note": "changed"},
                    check=error_check({409: frozenset({"idempotency_key_reused"})}))

    def invalid(rng: random.Random) -> Call:
        """A request refused on its face, with the status and code it must get."""
        v, other = rng.sample(volunteers, 2)
        club, vtoken = world.org(rng, CLUB), world.volunteers[v]
        key = {"Idempotency-Key": str(uuid.uuid4())}
        hours = {"volunteer_id": v, "org_id": CLUB, "date": days_ago(1), "minutes": 60, "activity": "Food bank"}
        cases: list[tuple[str, str, str | None, Any, int, str, dict[str, str]]] = [
            ("POST", "/v1/hours", club, {**hours, "minutes": -30}, 422, "invalid_request", key),
            ("POST", "/v1/hours", club, {**hours, "minutes": 2000}, 422, "invalid_request", {}),
            ("POST", "/v1/hours", club, {**hours, "org_id": AUTO}, 403, "forbidden", key),
            ("POST", "/v1/hours", club, {**hours, "volunteer_id": "ld-nobody"}, 404, "unknown_volunteer", key),
            ("POST", "/v1/hours", club, {**hours, "date": "yesterday"}, 422, "invalid_request", key),
            ("POST", "/v1/hours", vtoken, hours, 403, "forbidden", key),
            ("POST", "/v1/gifts", vtoken, {"to_volunteer_id": v, "amount": "1"}, 422, "self_gift", key),
            ("POST", "/v1/gifts", vtoken, {"to_volunteer_id": other, "amount": "0"}, 422, "invalid_amount", key),
            ("POST", "/v1/gifts", vtoken, {"to_volunteer_id": "ld-nobody", "amount": "1"}, 404, "unknown_volunteer",
             key),
            ("POST", "/v1/redemptions", vtoken, {"partner_id": LIDO, "amount": "-1"}, 422, "invalid_request", key),
            ("POST", "/v1/redemptions", vtoken, {"partner_id": CLUB, "amount": "1"}, 422, "not_a_partner", key),
            ("POST", "/v1/bookings", vtoken, {"opportunity_id": "ld-nothing"}, 404, "unknown_opportunity", key),
            ("POST", "/v1/hours", club, b'{"volunteer_id": ', 400, "malformed_json", key),
            ("POST", "/v1/hours", club, hours, 400, "invalid_idempotency_key", {"Idempotency-Key": "k" * 201}),
            ("GET", f"/v1/volunteers/{other}/balance", vtoken, None, 403, "forbidden", {}),
            ("GET", f"/v1/volunteers/{other}/statement", vtoken, None, 403, "forbidden", {}),
            # An organisation learns nothing of volunteers outside it, not even whether they exist.
            ("GET", "/v1/volunteers/ld-nobody/balance", club, None, 403, "not_a_member", {}),
            ("GET", f"/v1/volunteers/{v}/balance", world.org(rng, LIDO), None, 403, "not_a_member", {}),
            ("GET", f"/v1/volunteers/{v}/statement", rng.choice(world.leads), None, 403, "forbidden", {}),
            ("GET", "/v1/stats/participation", vtoken, None, 403, "forbidden", {}),
            ("GET", f"/v1/events/{uuid.uuid4()}", vtoken, None, 404, "unknown_event", {}),
            ("GET", f"/v1/volunteers/{v}/balance", None, None, 401, "unauthenticated", {}),
            ("GET", f"/v1/volunteers/{v}/balance", "tc_not-a-token", None, 401, "invalid_token", {}),
            ("POST", "/v1/gifts", "tc_not-a-token", {"to_volunteer_id": other, "amount": "1"}, 401, "invalid_token",
             key),
        ]
        method, path, token, body, status, code, headers = rng.choice(cases)
        call = Call(method, path, {status}, {**bearer(token), **headers},
                    check=error_check({status: frozenset({code})}))
        if isinstance(body, bytes):
            call.content, call.headers = body, {**call.headers, "Content-Type": "application/json"}
        elif body is not None:
            call.json = body
        return call

    return [
        Template("balance", 24, balance),
        Template("statement", 14, statement),
        Template("event status", 14, event_status),
        Template("participation", 3, participation),
        Template("cold spots", 1, cold_spots),
        Template("catalogue", 3, catalogue),
        Template("log hours", 8, log_hours),
        Template("decide hours", 2, decide),
        Template("spend", 6, spend),
        Template("gift", 5, gift),
        Template("book", 4, book),
        Template("settle booking", 3, settle_booking),
        Template("replay", 4, replay),
        Template("reuse key", 1, reuse),
        Template("invalid", 6, invalid),
    ]


