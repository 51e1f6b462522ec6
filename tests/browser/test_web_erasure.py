"""The admin's erasure of a volunteer in Debian's Chromium against the real stack (docs/design.md §5.15, §8.3):
from the people who sign in to a confirmation page that says what goes and what stays, then the erasure; each
page checked with axe-core at phone and desktop sizes and used with the keyboard; who may use the page.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.browser.test_web import _axe, _context, _shots, _sign_in_with_card
from tests.browser.test_web_coordinator import _follow, _press
from tests.e2e.api_stack import Api, ready_api
from tests.e2e.conftest import _make_stack
from web import people
from web.people import Person, PersonRole

ADMIN_TOKEN = "tc_erase_admin_" + "7" * 32
AREA = "E09000030"
NAME = "Amina Begum"


@dataclass
class EraseStack:
    url: str
    api: Api
    engine: Any
    admin: Person
    coordinator: Person
    desk: Person
    lead: Person
    volunteer: Person  # Amina, who signs in too
    amina: str
    bea: str  # another volunteer, for the role matrix


@pytest.fixture(scope="module")
def erase_stack(embedded_postgres: str, primary_template: str, kafka_bootstrap: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[EraseStack]:
    tmp = tmp_path_factory.mktemp("erase")
    for stack in _make_stack(embedded_postgres, primary_template, kafka_bootstrap, tmp):
        stack.start_worker()
        with ready_api({**stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN}, tmp / "api.log") as process:
            api = Api(process.url, ADMIN_TOKEN)
            api.organisation("er-club", ["community"], AREA)
            api.organisation("er-lido", ["partner"], AREA)
            registered = api.post("/v1/volunteers", ADMIN_TOKEN, {
                "display_name": NAME, "email": "amina@example.org", "area": AREA, "consent_stats": True,
                "org_id": "er-club", "reference": "AB-1"})
            assert registered.status_code == 201, registered.text
            amina = registered.json()["id"]
            bea = api.volunteer("er-bea", AREA, member_of=("er-club",))
            try:
                yield EraseStack(
                    process.url, api, stack.engine,
                    people.add_person(stack.engine, "Ada", PersonRole.ADMIN),
                    people.add_person(stack.engine, "Cora", PersonRole.COORDINATOR, org_id="er-club"),
                    people.add_person(stack.engine, "Des", PersonRole.FRONT_DESK, org_id="er-lido"),
                    people.add_person(stack.engine, "Lou", PersonRole.LEAD),
                    people.add_person(stack.engine, NAME, PersonRole.VOLUNTEER, email="amina@example.org",
                                      volunteer_id=amina),
                    amina, bea)
            finally:
                api.close()


def _client(stack: EraseStack, person: Person) -> tuple[httpx.Client, str]:
    cookie, session = people.start_session(stack.engine, person)
    return httpx.Client(base_url=stack.url, cookies={"tc_session": cookie}, timeout=60), session.csrf_token


def test_who_may_erase_a_volunteer(erase_stack: EraseStack) -> None:
    path = f"/app/volunteers/{erase_stack.bea}/erase"
    bea_person = people.add_person(erase_stack.engine, "Bea", PersonRole.VOLUNTEER, volunteer_id=erase_stack.bea)
    for person in (erase_stack.coordinator, erase_stack.desk, erase_stack.lead, bea_person):
        client, csrf = _client(erase_stack, person)
        with client:
            assert client.get(path).status_code == 403, person.role
            assert client.post(path, data={"csrf_token": csrf}).status_code == 403, person.role
    with httpx.Client(base_url=erase_stack.url, timeout=60) as nobody:
        signed_out = nobody.get(path)
        assert signed_out.status_code in (302, 303) and "/app/sign-in" in signed_out.headers["location"]
    admin, csrf = _client(erase_stack, erase_stack.admin)
    with admin:
        assert admin.post(path, data={"csrf_token": "not the form's"}).status_code == 403  # CSRF
        assert admin.get("/app/volunteers/v-000000000000/erase").status_code == 404
        with erase_stack.engine.connect() as conn:  # none of the refusals erased anything
            assert conn.execute(text("SELECT erased_at FROM volunteers WHERE id = :v"),
                                {"v": erase_stack.bea}).scalar() is None
            assert conn.execute(text("SELECT count(*) FROM volunteer_profiles WHERE volunteer_id = :v"),
                                {"v": erase_stack.bea}).scalar() == 1


def test_an_admin_erases_a_volunteer_from_the_people_page(erase_stack: EraseStack, browser: Any,
                                                          screenshot_dir: Any) -> None:
    amina_card = people.new_card(erase_stack.engine, erase_stack.volunteer.id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, erase_stack.url, people.new_card(erase_stack.engine, erase_stack.admin.id))
        _follow(page, "People who sign in")
        _follow(page, f"Erase personal data of {NAME}")
        assert page.url == erase_stack.url + f"/app/volunteers/{erase_stack.amina}/erase"
        assert page.locator("h1").inner_text() == f"Erase {NAME}'s personal data?"
        main = page.locator("main").inner_text()
        assert "amina@example.org" in main and "What will be deleted" in main and "What stays" in main
        assert "This cannot be undone" in main
        _shots(page, screenshot_dir, "erase-confirm")
        _press(page, "Erase their personal data")
        assert page.locator("h1").inner_text() == "Personal data erased"
        assert f"{NAME} can no longer sign in" in page.locator("main").inner_text()
        _shots(page, screenshot_dir, "erased")
        page.goto(erase_stack.url + f"/app/volunteers/{erase_stack.amina}/erase")  # a second time
        assert page.locator("h1").inner_text() == "Their personal data is already erased"
        page.goto(erase_stack.url + "/app/people")
        assert NAME not in page.locator("table").inner_text()
        _axe(page)
    finally:
        context.close()
    with erase_stack.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM volunteer_profiles WHERE volunteer_id = :v"),
                            {"v": erase_stack.amina}).scalar() == 0
        assert conn.execute(text("SELECT actor FROM audit_log WHERE action = 'volunteer_erased' AND subject = :s"),
                            {"s": f"volunteer:{erase_stack.amina}"}).scalar() == f"person:{erase_stack.admin.id}"
    assert people.use_card(erase_stack.engine, amina_card) is None  # her card signs nobody in
