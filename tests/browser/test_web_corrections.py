"""Corrections and the audit log in Debian's Chromium against the real stack (docs/design.md §5.14, §8.3): a
coordinator corrects one of their organisation's approvals and the volunteer reads why on their statement; an
admin corrects any entry by its id and reads the audit log; each page checked with axe-core at phone and desktop
sizes and used with the keyboard; who may use each page.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.browser.test_web import _axe, _context, _shots, _sign_in_with_card
from tests.browser.test_web_coordinator import YESTERDAY, _follow, _press, _type_into
from tests.e2e.api_stack import Api, ready_api
from tests.e2e.conftest import _make_stack
from web import people
from web.people import Person, PersonRole

ADMIN_TOKEN = "tc_fix_admin_" + "5" * 32
AREA = "E09000030"
WHY = "Counted twice: the session was logged by both leaders"


@dataclass
class FixStack:
    url: str
    api: Api
    engine: Any
    coordinator: Person  # of fx-club, whose hours wait for approval
    other_coordinator: Person  # of fx-other
    admin: Person
    volunteer: Person
    lead: Person
    ana: str
    club: str  # fx-club's API token


@pytest.fixture(scope="module")
def fix(embedded_postgres: str, primary_template: str, kafka_bootstrap: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[FixStack]:
    tmp = tmp_path_factory.mktemp("fix")
    for stack in _make_stack(embedded_postgres, primary_template, kafka_bootstrap, tmp):
        stack.start_worker()
        with ready_api({**stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN}, tmp / "api.log") as process:
            api = Api(process.url, ADMIN_TOKEN)
            api.organisation("fx-club", ["community"], AREA)
            api.organisation("fx-other", ["community"], AREA)
            ana = api.volunteer("fx-ana", AREA, member_of=("fx-club", "fx-other"))
            club = api.token("org", org_id="fx-club")
            try:
                yield FixStack(process.url, api, stack.engine,
                               people.add_person(stack.engine, "Cora", PersonRole.COORDINATOR, org_id="fx-club"),
                               people.add_person(stack.engine, "Oli", PersonRole.COORDINATOR, org_id="fx-other"),
                               people.add_person(stack.engine, "Ada", PersonRole.ADMIN),
                               people.add_person(stack.engine, "Ana", PersonRole.VOLUNTEER, volunteer_id=ana),
                               people.add_person(stack.engine, "Lou", PersonRole.LEAD), ana, club)
            finally:
                api.close()


def _approved(fix: FixStack, minutes: int) -> str:
    """Hours of Ana's at fx-club, approved: the approval's event id."""
    logged = fix.api.accepted(fix.api.post("/v1/hours", fix.club, {
        "volunteer_id": fix.ana, "org_id": "fx-club", "date": YESTERDAY, "minutes": minutes, "activity": "Lunch"}))
    fix.api.applied(logged, fix.club)
    approval = fix.api.accepted(fix.api.post(f"/v1/hours/{logged}/approve", fix.club))
    fix.api.applied(approval, fix.club)
    return approval


def _client(fix: FixStack, person: Person) -> tuple[httpx.Client, str]:
    cookie, session = people.start_session(fix.engine, person)
    return httpx.Client(base_url=fix.url, cookies={"tc_session": cookie}, timeout=60), session.csrf_token


def test_a_coordinator_corrects_an_approval_and_the_volunteer_reads_why(fix: FixStack, browser: Any,
                                                                       screenshot_dir: Any) -> None:
    approval = _approved(fix, 120)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, fix.url, people.new_card(fix.engine, fix.coordinator.id))
        _follow(page, "Correct an approval")
        assert page.url == fix.url + "/app/corrections"
        assert "Vol fx-ana" in page.locator("table").inner_text()
        _shots(page, screenshot_dir, "corrections-approvals")
        _follow(page, "Correct")
        assert page.url == fix.url + f"/app/entries/{approval}/correct"
        assert "Credits earned for hours" in page.locator(".summary").inner_text()
        _press(page, "Correct this entry")  # nothing chosen, nothing said
        summary = page.locator(".error-summary").inner_text()
        assert "Choose why the entry is wrong" in summary and "Say what was wrong" in summary
        _shots(page, screenshot_dir, "corrections-form-errors")
        page.locator("#reason_code-duplicate").focus()
        page.keyboard.press("Space")
        _type_into(page, "#reason", WHY)
        _press(page, "Correct this entry")
        assert page.locator("h1").inner_text() == "Entry corrected"
        _axe(page)
    finally:
        context.close()
    assert fix.api.balance(fix.ana)["available"] == "0.00"

    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, fix.url, people.new_card(fix.engine, fix.volunteer.id))
        page.goto(fix.url + "/app/statement")
        first = page.locator(".statement li").first.inner_text()
        assert "Correction: 2 credits taken off" in first and WHY in first, first
        _shots(page, screenshot_dir, "corrections-statement")
    finally:
        context.close()
    with fix.engine.connect() as conn:
        row = conn.execute(text("SELECT c.reason_code, c.requested_by, a.actor FROM corrections c "
                                "JOIN audit_log a ON a.event_id = c.event_id WHERE c.target_event_id = :t"),
                           {"t": approval}).one()
    assert (row.reason_code, row.requested_by) == ("duplicate", f"person:{fix.coordinator.id}")
    assert row.actor == f"person:{fix.coordinator.id}"


def test_an_admin_corrects_an_entry_by_its_id_and_reads_the_audit_log(fix: FixStack, browser: Any,
                                                                       screenshot_dir: Any) -> None:
    approval = _approved(fix, 60)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, fix.url, people.new_card(fix.engine, fix.admin.id))
        _follow(page, "Correct an entry")
        _type_into(page, "#entry", "not-an-id")
        _press(page, "Continue")
        assert "Enter the entry's id" in page.locator(".error-summary").inner_text()
        _shots(page, screenshot_dir, "corrections-find-errors")
        page.locator("#entry").fill("")
        _type_into(page, "#entry", approval)
        _press(page, "Continue")
        assert page.url == fix.url + f"/app/entries/{approval}/correct"
        _shots(page, screenshot_dir, "corrections-form")
        page.locator("#reason_code").focus()
        page.keyboard.press("Space")
        _type_into(page, "#reason", "Approved before the rota was checked")
        _press(page, "Correct this entry")
        assert page.locator("h1").inner_text() == "Entry corrected"

        page.goto(fix.url + f"/app/entries/{approval}/correct")  # a second time
        assert "that entry has been corrected already" in page.locator("main").inner_text()
        page.goto(fix.url + "/app")
        _follow(page, "The audit log")
        log = page.locator("table").inner_text()
        assert f"entry:{approval}" in log and "Entry corrected" in log
        assert "Approved before the rota" not in log  # the words stay with the correction
        _shots(page, screenshot_dir, "audit-log")
        page.select_option("#action", "membership_started")
        _press(page, "Show")
        assert f"volunteer:{fix.ana}" in page.locator("table").inner_text()
        assert "Entry corrected" not in page.locator("table").inner_text()
        _axe(page)
    finally:
        context.close()
    client, _ = _client(fix, fix.admin)
    with client:
        downloaded = client.get("/app/audit.csv")
    assert downloaded.status_code == 200 and downloaded.headers["content-type"].startswith("text/csv")
    assert downloaded.text.startswith("id,at,actor,action,subject,event_id,detail") and f"entry:{approval}" in \
        downloaded.text


def test_who_may_correct_and_read_the_audit_log(fix: FixStack) -> None:
    approval = _approved(fix, 30)
    for person in (fix.volunteer, fix.lead):
        client, csrf = _client(fix, person)
        with client:
            for path in ("/app/corrections", f"/app/entries/{approval}/correct", "/app/audit", "/app/audit.csv"):
                assert client.get(path).status_code == 403, (person.role, path)
            posted = client.post(f"/app/entries/{approval}/correct",
                                 data={"csrf_token": csrf, "reason_code": "other", "reason": "mine"})
            assert posted.status_code == 403
    other, other_csrf = _client(fix, fix.other_coordinator)
    coordinator, csrf = _client(fix, fix.coordinator)
    with other, coordinator:
        assert approval not in other.get("/app/corrections").text  # another organisation's approval
        refused = other.get(f"/app/entries/{approval}/correct")
        assert refused.status_code == 403 and "its own approvals" in refused.text
        tried = other.post(f"/app/entries/{approval}/correct",
                           data={"csrf_token": other_csrf, "reason_code": "other", "reason": "not mine"})
        assert tried.status_code == 403
        for path in ("/app/audit", "/app/audit.csv"):
            assert coordinator.get(path).status_code == 403
        expired = coordinator.post(f"/app/entries/{approval}/correct",
                                   data={"csrf_token": "stale", "reason_code": "other", "reason": "x"})
        assert expired.status_code == 403
        assert re.search(r'name="csrf_token" value="([^"]+)"', coordinator.get(f"/app/entries/{approval}/correct").text)
    with fix.engine.connect() as conn:
        corrected = conn.execute(text("SELECT count(*) FROM corrections WHERE target_event_id = :t"),
                                 {"t": approval}).scalar_one()
    assert corrected == 0
