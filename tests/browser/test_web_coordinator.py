"""The coordinator's door in Debian's Chromium against the real stack (PostgreSQL, broker, worker, API): members
with their references and balances, registering a volunteer, printing a sign-in card, logging hours for a member,
the approval queue, and the downloads of hours (and the front desk's of its takings); every page checked with
axe-core at phone and desktop sizes and used with the keyboard alone; who may use each page, and that an
organisation sees its own members and hours only (docs/design.md §8.3, §5.12).
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import text

from tests.browser.test_web import _axe, _context, _shots, _sign_in_with_card
from tests.e2e.api_stack import Api, ready_api
from tests.e2e.conftest import _make_stack
from web import people
from web.people import Person, PersonRole

ADMIN_TOKEN = "tc_coord_admin_" + "7" * 32
AREA = "E09000030"
YESTERDAY = (date.today() - timedelta(days=1)).isoformat()
TWO_DAYS_AGO = (date.today() - timedelta(days=2)).isoformat()


@dataclass
class CoordinatorStack:
    url: str
    api: Api
    engine: Any
    garden_coordinator: Person  # co-garden approves hours at once
    library_coordinator: Person  # co-library's hours wait for approval
    amina: str  # a volunteer of co-garden
    bo: str  # a volunteer of co-library
    library: str  # co-library's API token
    volunteer: Person
    desk: Person


@pytest.fixture(scope="module")
def coord(embedded_postgres: str, primary_template: str, kafka_bootstrap: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorStack]:
    tmp = tmp_path_factory.mktemp("coord")
    for stack in _make_stack(embedded_postgres, primary_template, kafka_bootstrap, tmp):
        stack.start_worker()
        with ready_api({**stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN}, tmp / "api.log") as process:
            api = Api(process.url, ADMIN_TOKEN)
            api.organisation("co-garden", ["community"], AREA, auto_approve=True)
            api.organisation("co-library", ["community"], AREA)
            api.organisation("co-lido", ["partner"], AREA)
            amina = api.volunteer("co-amina", AREA, member_of=("co-garden",), reference="G-001")
            bo = api.volunteer("co-bo", AREA, member_of=("co-library",), reference="L-7")
            library = api.token("org", org_id="co-library")
            cora = people.add_person(stack.engine, "Cora", PersonRole.COORDINATOR, org_id="co-garden")
            lee = people.add_person(stack.engine, "Lee", PersonRole.COORDINATOR, org_id="co-library")
            volunteer = people.add_person(stack.engine, "Amina", PersonRole.VOLUNTEER, volunteer_id=amina)
            desk = people.add_person(stack.engine, "Sam at the Lido", PersonRole.FRONT_DESK, org_id="co-lido")
            try:
                yield CoordinatorStack(process.url, api, stack.engine, cora, lee, amina, bo, library, volunteer, desk)
            finally:
                api.close()


def _client(coord: CoordinatorStack, person: Person) -> tuple[httpx.Client, str]:
    cookie, session = people.start_session(coord.engine, person)
    client = httpx.Client(base_url=coord.url, cookies={"tc_session": cookie}, follow_redirects=False, timeout=60)
    return client, session.csrf_token


def _type_into(page: Any, selector: str, value: str) -> None:
    """With the keyboard: focus the field, type."""
    page.locator(selector).focus()
    page.keyboard.type(value)


def _press(page: Any, name: str) -> None:
    """With the keyboard: focus the button, press Enter, wait for the page it brings."""
    with page.expect_navigation():
        page.get_by_role("button", name=name, exact=True).focus()
        page.keyboard.press("Enter")


def _follow(page: Any, name: str) -> None:
    with page.expect_navigation():
        page.get_by_role("link", name=name).first.focus()
        page.keyboard.press("Enter")


def _pending_hours(coord: CoordinatorStack, minutes: int, day: str, activity: str) -> str:
    logged = coord.api.post("/v1/hours", coord.library, {"volunteer_id": coord.bo, "org_id": "co-library",
                                                         "date": day, "minutes": minutes, "activity": activity})
    event_id = coord.api.accepted(logged)
    coord.api.applied(event_id, coord.library)
    return event_id


def test_a_coordinator_registers_a_volunteer_prints_their_card_and_logs_their_hours(
        coord: CoordinatorStack, browser: Any, screenshot_dir: Any) -> None:
    card = people.new_card(coord.engine, coord.garden_coordinator.id)
    context, theirs = _context(browser), _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, coord.url, card)
        _follow(page, "Members: register, print a card, log hours")
        assert page.url == coord.url + "/app/members"
        table = page.locator("table").inner_text()
        assert "Vol co-amina" in table and "G-001" in table and "0 credits" in table
        assert "co-bo" not in table and "L-7" not in table  # another organisation's member
        _shots(page, screenshot_dir, "coordinator-members")

        _follow(page, "Register a volunteer")
        assert page.locator("#area").input_value() == AREA  # the organisation's own area, filled in
        page.locator("#area").fill("")
        _press(page, "Register them")  # nothing given
        summary = page.locator(".error-summary").inner_text()
        for message in ("Enter the volunteer's name", "Enter the area code",
                        "Say whether the volunteer agrees"):
            assert message in summary, summary
        _shots(page, screenshot_dir, "coordinator-register-errors")
        page.locator(".error-summary a").first.focus()
        page.keyboard.press("Enter")  # the summary's link takes the keyboard to the field
        assert page.evaluate("document.activeElement.id") == "display_name"
        page.keyboard.type("Dev Patel")
        _type_into(page, "#area", AREA)
        _type_into(page, "#reference", "G-002")
        page.locator("#consent_stats").focus()
        page.keyboard.press("Space")
        page.locator("#age_band").select_option("25-34")
        page.locator("#seb").select_option("intermediate")
        # The main earner's job is chosen from the Social Mobility Commission's list, never typed (§5.16).
        assert page.locator("input#seb_detail").count() == 0
        page.get_by_label("Which of these best describes that main earner's job?").select_option(
            label="Small business owner employing fewer than 25 people")
        page.locator("#first_time_volunteer").focus()
        page.keyboard.press("Space")
        _shots(page, screenshot_dir, "coordinator-register")
        _press(page, "Register them")
        assert page.url.startswith(coord.url + "/app/members?registered=")
        assert page.get_by_role("status").inner_text().strip() == (
            "Dev Patel is registered and is now a member of Org co-garden.")
        row = page.locator("tr", has_text="Dev Patel").inner_text()
        assert "G-002" in row and "0 credits" in row
        new_id = page.url.split("registered=")[1]
        with coord.engine.connect() as conn:
            registered = conn.execute(text(
                "SELECT v.consent_stats, v.age_band, v.seb, v.seb_detail, v.first_time_volunteer, p.role, "
                "p.display_name FROM volunteers v JOIN people p ON p.volunteer_id = v.id WHERE v.id = :v"),
                {"v": new_id}).one()
        assert tuple(registered) == (True, "25-34", "intermediate", "small_business_owner", True, "volunteer",
                                     "Dev Patel")

        _follow(page, "Print a sign-in card for Dev Patel")
        assert "stop working" not in page.locator("main").inner_text()  # no card yet
        _shots(page, screenshot_dir, "coordinator-card-confirm")
        _press(page, "Make a new card")
        first_code = page.locator(".card-code").inner_text().replace(" ", "")
        assert re.fullmatch(r"[A-Z2-9]{10}", first_code), first_code
        assert page.locator(".qr svg").count() == 1
        _shots(page, screenshot_dir, "coordinator-card")

        page.goto(coord.url + f"/app/members/{new_id}/card")  # a second card voids the first, and says so
        assert "their old card will stop working" in page.locator("main").inner_text()
        _press(page, "Make a new card")
        code = page.locator(".card-code").inner_text().replace(" ", "")
        assert code != first_code

        phone = theirs.new_page()
        phone.goto(coord.url + f"/app/sign-in?card={first_code}")  # the old card: void
        with phone.expect_navigation():
            phone.locator("#code").press("Enter")
        assert "does not sign anyone in" in phone.locator(".error-summary").inner_text()
        phone.goto(coord.url + f"/app/sign-in?card={code}")  # what the new card's QR code opens
        assert phone.locator("#code").input_value() == code
        with phone.expect_navigation():
            phone.locator("#code").press("Enter")
        assert phone.url == coord.url + "/app"
        assert phone.locator(".panel").inner_text().strip() == "You have 0 credits to spend."

        page.goto(coord.url + "/app/members")
        _follow(page, "Log hours for Dev Patel")
        _shots(page, screenshot_dir, "coordinator-hours")
        page.locator("#date").fill(YESTERDAY)
        _type_into(page, "#hours", "1:30")
        _type_into(page, "#activity", "Gardening")
        assert page.locator("#category").input_value() == "other", "the kind of activity starts as Other"
        page.locator("#category").focus()
        page.keyboard.press("Home")  # with the keyboard alone: the first kind, then down the list
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        assert page.locator("#category option:checked").inner_text() == "Environment"
        _press(page, "Log the hours")
        outcome = page.get_by_role("status").inner_text().strip()
        assert outcome.startswith("Approved: 1 hour 30 minutes of Gardening on ") and outcome.endswith(
            " for Dev Patel."), outcome
        assert page.locator("#category").input_value() == "environment", "kept for the next session of the day"
        with coord.engine.connect() as conn:
            kinds = conn.execute(text("SELECT l.category FROM hours_logs l JOIN event_notes n ON n.event_id = l.event_id WHERE n.text = 'Gardening'")).scalars().all()
        assert kinds == ["environment"]
        _shots(page, screenshot_dir, "coordinator-hours-approved")

        page.locator("#hours").fill("23")  # 24.5 hours in one day
        _press(page, "Log the hours")
        assert "that would be more than 24 hours in one day" in page.locator("main").inner_text().lower()
        _shots(page, screenshot_dir, "coordinator-hours-refused")

        page.locator("#hours").fill("a lot")
        page.locator("#activity").fill("")
        _press(page, "Log the hours")
        summary = page.locator(".error-summary").inner_text()
        assert "Enter the hours worked, like 1.5 or 1:30" in summary and "Say what they did" in summary

        page.goto(coord.url + "/app/members")
        assert "1.50 credits" in page.locator("tr", has_text="Dev Patel").inner_text()
    finally:
        context.close()
        theirs.close()


def test_the_approval_queue_approves_and_rejects_each_selected_log_and_says_what_became_of_each(
        coord: CoordinatorStack, browser: Any, screenshot_dir: Any) -> None:
    _pending_hours(coord, 120, TWO_DAYS_AGO, "Shelving")
    _pending_hours(coord, 23 * 60, YESTERDAY, "Reading marathon")
    _pending_hours(coord, 120, YESTERDAY, "Story time")  # with the 23 hours, more than a day
    card = people.new_card(coord.engine, coord.library_coordinator.id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, coord.url, card)
        _follow(page, "Members: register, print a card, log hours")
        _follow(page, "Log hours for Vol co-bo")
        page.locator("#date").fill(TWO_DAYS_AGO)
        _type_into(page, "#hours", "0.5")
        _type_into(page, "#activity", "Tidying")
        _press(page, "Log the hours")
        outcome = page.get_by_role("status").inner_text().strip()
        assert outcome.startswith("Logged: 30 minutes of Tidying on ") and outcome.endswith(
            " for Vol co-bo, waiting for approval."), outcome
        _shots(page, screenshot_dir, "coordinator-hours-waiting")
        page.goto(coord.url + "/app")
        _follow(page, "Hours waiting for approval")
        assert page.locator("tbody tr").count() == 4
        assert "L-7" in page.locator("table").inner_text()
        _shots(page, screenshot_dir, "coordinator-queue")

        _press(page, "Approve the selected hours")  # none selected
        assert "Select the hours to approve or reject" in page.locator(".error-summary").inner_text()
        _shots(page, screenshot_dir, "coordinator-queue-errors")

        _press(page, "Select all")  # without JavaScript: the same page with every box ticked
        assert page.locator("input.check:checked").count() == 4
        _shots(page, screenshot_dir, "coordinator-queue-all")
        _press(page, "Approve the selected hours")
        said = [item.strip() for item in page.get_by_role("status").locator("li").all_inner_texts()]
        assert len(said) == 4, said
        assert said[0].startswith("Approved: Vol co-bo, 2 hours on "), said  # oldest work first
        assert said[1].startswith("Approved: Vol co-bo, 30 minutes on "), said
        assert said[2].startswith("Approved: Vol co-bo, 23 hours on "), said
        assert said[3].startswith("Not approved: Vol co-bo, 2 hours on ") and said[3].endswith(
            "that would be more than 24 hours in one day."), said
        _shots(page, screenshot_dir, "coordinator-queue-decided")
        assert page.locator("tbody tr").count() == 1  # refused, it stays for the organisation to reject

        page.locator("input.check").first.focus()
        page.keyboard.press("Space")
        _press(page, "Reject the selected hours")  # without a reason
        assert "Say why the hours are rejected" in page.locator(".error-summary").inner_text()
        assert page.locator("input.check:checked").count() == 1  # the choice is kept
        _type_into(page, "#reason", "Already counted in the marathon")
        _press(page, "Reject the selected hours")
        said = page.get_by_role("status").inner_text()
        assert "Rejected: Vol co-bo, 2 hours on " in said
        assert "No hours are waiting for approval." in page.locator("main").inner_text()
        _axe(page)
    finally:
        context.close()
    assert coord.api.balance(coord.bo, coord.library)["available"] == "25.50"
    with coord.engine.connect() as conn:
        decided = conn.execute(text(
            "SELECT d.decision, coalesce(n.text, d.reason) AS reason, d.decided_by FROM hours_decisions d JOIN hours_logs l "
            "ON l.event_id = d.log_event_id LEFT JOIN event_notes n ON n.event_id = d.decision_event_id "
            "WHERE l.volunteer_id = :v ORDER BY d.decided_at"), {"v": coord.bo}).all()
    assert [(row.decision, row.reason, row.decided_by) for row in decided] == [
        ("approved", "", "org:co-library"), ("approved", "", "org:co-library"), ("approved", "", "org:co-library"),
        ("rejected", "Already counted in the marathon", "org:co-library")]


COORDINATOR_PAGES = ("/app/members", "/app/members/new", "/app/approvals")


def test_only_coordinators_use_these_pages_and_each_sees_their_own_organisation_only(coord: CoordinatorStack) -> None:
    for person in (coord.volunteer, coord.desk):
        client, csrf = _client(coord, person)
        with client:
            for path in (*COORDINATOR_PAGES, f"/app/members/{coord.amina}/hours", f"/app/members/{coord.amina}/card"):
                refused = client.get(path)
                assert refused.status_code == 403, (person.role, path)
                assert "This page is for a community organisation&#39;s coordinators." in refused.text
            posted = client.post(f"/app/members/{coord.amina}/hours", data={
                "csrf_token": csrf, "date": YESTERDAY, "hours_worked": "1", "activity": "Sneaky"})
            assert posted.status_code == 403
    garden, _ = _client(coord, coord.garden_coordinator)
    library, library_csrf = _client(coord, coord.library_coordinator)
    with garden, library:
        assert all(garden.get(path).status_code == 200 for path in COORDINATOR_PAGES)
        listed = library.get("/app/members").text
        assert "co-bo" in listed and "co-amina" not in listed and "G-001" not in listed
        for path in (f"/app/members/{coord.amina}/hours", f"/app/members/{coord.amina}/card"):
            refused = library.get(path)
            assert refused.status_code == 403 and "not a member of your organisation" in refused.text
        for path, data in ((f"/app/members/{coord.amina}/card", {}),
                           (f"/app/members/{coord.amina}/hours", {"date": YESTERDAY, "hours_worked": "1",
                                                                  "activity": "Sneaky"})):
            assert library.post(path, data={"csrf_token": library_csrf, **data}).status_code == 403
        with coord.engine.connect() as conn:
            cards = conn.execute(text("SELECT count(*) FROM sign_in_cards c JOIN people p ON p.id = c.person_id "
                                      "WHERE p.volunteer_id = :v"), {"v": coord.amina}).scalar_one()
            sneaky = conn.execute(text("SELECT count(*) FROM event_notes WHERE text = 'Sneaky'")).scalar_one()
        assert (cards, sneaky) == (0, 0)

        log_id = _pending_hours(coord, 30, YESTERDAY, "Library only")
        assert "Library only" in library.get("/app/approvals").text
        assert "Library only" not in garden.get("/app/approvals").text
        garden_csrf = re.search(r'name="csrf_token" value="([^"]+)"', garden.get("/app/approvals").text)
        assert garden_csrf is not None
        tried = garden.post("/app/approvals", data={"csrf_token": garden_csrf[1], "action": "approve", "log": log_id})
        assert tried.status_code == 200 and "not your organisation&#39;s" in tried.text
        with coord.engine.connect() as conn:
            decided = conn.execute(text("SELECT count(*) FROM hours_decisions WHERE log_event_id = :e"),
                                   {"e": log_id}).scalar_one()
        assert decided == 0


def test_registering_refuses_what_the_api_refuses_and_every_form_checks_its_csrf_token(coord: CoordinatorStack) -> None:
    client, csrf = _client(coord, coord.garden_coordinator)
    good = {"display_name": "Eve Stone", "area": AREA, "consent_stats": "no", "reference": "G-001"}
    with client:
        for path in ("/app/members/new", f"/app/members/{coord.amina}/card", f"/app/members/{coord.amina}/hours",
                     "/app/approvals"):
            refused = client.post(path, data={**good, "csrf_token": "not-the-token"})
            assert refused.status_code == 403 and "This form has expired" in refused.text, path
        taken = client.post("/app/members/new", data={**good, "csrf_token": csrf})  # G-001 is Amina's
        assert taken.status_code == 409 and "Another member already has that reference" in taken.text
        bad = client.post("/app/members/new", data={**good, "reference": "", "area": "nowhere",
                                                     "email": "not an address", "csrf_token": csrf})
        assert bad.status_code == 422
        assert "Enter the area code" in bad.text and "Enter an e-mail address" in bad.text
        worded = client.post("/app/members/new", data={**good, "reference": "", "consent_stats": "yes",
                                                        "seb_detail": "my dad drove a bus", "csrf_token": csrf})
        assert worded.status_code == 422 and "job from the list" in worded.text
        with coord.engine.connect() as conn:
            eves = conn.execute(text("SELECT count(*) FROM volunteer_profiles WHERE display_name = 'Eve Stone'")
                                ).scalar_one()
        assert eves == 0
        made = client.post("/app/members/new", data={**good, "reference": "", "csrf_token": csrf})
        assert made.status_code == 303
        assert "Eve Stone is registered" in client.get(made.headers["location"]).text


def test_hours_for_a_group_log_one_each_and_may_be_approved_together(coord: CoordinatorStack, browser: Any,
                                                                    screenshot_dir: Any) -> None:
    cy = coord.api.volunteer("co-cy", AREA, member_of=("co-library",), reference="L-8")
    card = people.new_card(coord.engine, coord.library_coordinator.id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, coord.url, card)
        _follow(page, "Log hours for a group")
        _shots(page, screenshot_dir, "coordinator-group")
        _press(page, "Log the hours")  # nobody chosen, nothing typed
        assert "Choose the members who took part" in page.locator(".error-summary").inner_text()
        page.locator("#date").fill(TWO_DAYS_AGO)
        _type_into(page, "#hours", "2")
        _type_into(page, "#activity", "Book sale")
        for label in ("co-bo (L-7)", "co-cy (L-8)"):
            page.get_by_label(label).focus()
            page.keyboard.press("Space")
        page.get_by_label("Approve them now").focus()
        page.keyboard.press("Space")
        _press(page, "Log the hours")
        results = page.get_by_role("status").inner_text()
        assert "co-bo: approved." in results and "co-cy: approved." in results, results
        _shots(page, screenshot_dir, "coordinator-group-done")
    finally:
        context.close()
    with coord.engine.connect() as conn:
        decided = conn.execute(text(
            "SELECT l.volunteer_id, d.decision, d.decided_by FROM hours_logs l JOIN hours_decisions d "
            "ON d.log_event_id = l.event_id JOIN event_notes n ON n.event_id = l.event_id WHERE n.text = 'Book sale' "
            "ORDER BY l.volunteer_id")).all()
    assert sorted(decided) == sorted([(coord.bo, "approved", "org:co-library"), (cy, "approved", "org:co-library")])
    other, csrf = _client(coord, coord.garden_coordinator)  # co-library's members are not co-garden's
    with other:
        refused = other.post("/app/hours/group", data={"csrf_token": csrf, "date": YESTERDAY, "hours_worked": "1",
                                                      "activity": "x", "volunteer": coord.bo})
        assert refused.status_code == 422 and "Choose the members who took part" in refused.text
    desk, csrf = _client(coord, coord.desk)
    with desk:
        assert desk.get("/app/hours/group").status_code == 403


def test_the_queue_shows_one_members_hours_or_a_span_of_days_and_select_all_keeps_to_them(
        coord: CoordinatorStack, browser: Any, screenshot_dir: Any) -> None:
    dee = coord.api.volunteer("co-dee", AREA, member_of=("co-library",), reference="L-9")
    theirs = coord.api.post("/v1/hours", coord.library, {"volunteer_id": dee, "org_id": "co-library",
                                                         "date": YESTERDAY, "minutes": 45, "activity": "Filter me"})
    coord.api.applied(coord.api.accepted(theirs), coord.library)
    old = _pending_hours(coord, 30, (date.today() - timedelta(days=20)).isoformat(), "Long ago shift")
    client, csrf = _client(coord, coord.library_coordinator)
    with client:
        one = client.get("/app/approvals", params={"member": dee})
        assert "Filter me" in one.text and "Long ago shift" not in one.text
        span = client.get("/app/approvals", params={"from_day": (date.today() - timedelta(days=21)).isoformat(),
                                                    "to_day": (date.today() - timedelta(days=19)).isoformat()})
        assert "Long ago shift" in span.text and "Filter me" not in span.text
        everything = client.post("/app/approvals", data={"csrf_token": csrf, "action": "select_all", "member": dee})
        assert everything.text.count(" checked") == 1 and "Filter me" in everything.text
    assert old  # still waiting: nothing was decided by filtering or selecting
    card = people.new_card(coord.engine, coord.library_coordinator.id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, coord.url, card)
        page.goto(coord.url + f"/app/approvals?member={dee}")
        _shots(page, screenshot_dir, "coordinator-queue-filtered")
    finally:
        context.close()


def test_the_monthly_spreadsheet_is_previewed_with_each_bad_row_explained_then_imported_once(
        coord: CoordinatorStack, browser: Any, screenshot_dir: Any, tmp_path: Any) -> None:
    import io

    from openpyxl import Workbook

    day = (date.today() - timedelta(days=3)).strftime("%d/%m/%Y")
    sheet = tmp_path / "november.csv"
    sheet.write_text(f"Volunteer,Date,Hours,Activity,Category\nG-001,{day},1.5,Sheet gardening,Environment\n"
                     f"G-404,{day},1,Nobody,\nG-001,{day},lots,Bad hours,\n{coord.bo},{day},1,Not ours,\n"
                     f"Total,,2.5,,\n")
    card = people.new_card(coord.engine, coord.garden_coordinator.id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, coord.url, card)
        _follow(page, "Import the monthly spreadsheet")
        _shots(page, screenshot_dir, "coordinator-import")
        page.locator("#sheet").set_input_files(str(sheet))
        _press(page, "Check the spreadsheet")
        text_ = page.locator("main").inner_text()
        assert "1 row will be imported, 3 cannot be, 1 totals row left out" in text_, text_
        assert "nobody has that reference or card number in your organisation" in text_
        # Bo is a volunteer of the library, not of the garden: the worker would refuse the row, so it is not sent.
        assert "the volunteer is not a current member of the organisation" in text_
        assert "the hours are not ones we can read" in text_
        assert "Sheet gardening\tEnvironment" in page.locator("tr", has_text="Sheet gardening").inner_text(), \
            "the kind as read"
        _shots(page, screenshot_dir, "coordinator-import-preview")
        _press(page, "Import 1 row")
        assert "1 row sent." in page.get_by_role("status").inner_text()
        _shots(page, screenshot_dir, "coordinator-import-done")
        # The same sheet again, as a workbook: the same row is the same event, so nothing is added twice.
        book = Workbook()
        rows = book.active
        rows.append(["Volunteer", "Date", "Hours", "Activity"])
        rows.append(["G-001", date.today() - timedelta(days=3), 1.5, "Sheet gardening"])
        workbook = tmp_path / "november.xlsx"
        buffer = io.BytesIO()
        book.save(buffer)
        workbook.write_bytes(buffer.getvalue())
        page.goto(coord.url + "/app/import")
        page.locator("#sheet").set_input_files(str(workbook))
        _press(page, "Check the spreadsheet")
        assert "1 row will be imported" in page.locator("main").inner_text()
        _press(page, "Import 1 row")
    finally:
        context.close()

    def logged() -> int:
        with coord.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM hours_logs l JOIN event_notes n ON n.event_id = l.event_id WHERE n.text = 'Sheet gardening'"))
                       .scalar_one())
    from tests.e2e.stack import wait_until
    wait_until(lambda: logged() == 1, 30, "the imported row to be applied")
    assert logged() == 1  # imported once, as CSV and again as .xlsx
    with coord.engine.connect() as conn:
        assert conn.execute(text("SELECT l.category FROM hours_logs l JOIN event_notes n ON n.event_id = l.event_id WHERE n.text = 'Sheet gardening'")).scalar_one() \
            == "environment", "the sheet's Category column, in words"
    client, csrf = _client(coord, coord.desk)
    with client:
        assert client.get("/app/import").status_code == 403


def _download(page: Any, name: str) -> bytes:
    """With the keyboard: focus the link, press Enter, read the file the browser saved."""
    with page.expect_download() as started:
        page.get_by_role("link", name=name, exact=True).focus()
        page.keyboard.press("Enter")
    path = started.value.path()
    with open(path, "rb") as saved:
        return saved.read()


def test_the_hours_pages_and_the_bookings_page_link_to_downloads_whose_formulas_are_inert(
        coord: CoordinatorStack, browser: Any, screenshot_dir: Any) -> None:
    formula = '=HYPERLINK("http://example.com","click")'
    waiting = _pending_hours(coord, 40, YESTERDAY, formula)
    amina = coord.api.token("volunteer", volunteer_id=coord.amina)
    earned = coord.api.post("/v1/hours", coord.api.admin, {"volunteer_id": coord.amina, "org_id": "co-garden",
                                                           "date": YESTERDAY, "minutes": 60, "activity": "Weeding"})
    coord.api.applied(coord.api.accepted(earned))
    taken = coord.api.applied(coord.api.accepted(coord.api.post("/v1/redemptions", amina, {
        "partner_id": "co-lido", "amount": "0.5"})), amina)["event_id"]
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, coord.url, people.new_card(coord.engine, coord.library_coordinator.id))
        page.goto(coord.url + "/app/approvals")
        _shots(page, screenshot_dir, "coordinator-queue-downloads")
        shown = _download(page, "The hours shown, waiting for approval (CSV)")
        rows = list(csv.DictReader(io.StringIO(shown.decode())))
        assert waiting in [r["log_event_id"] for r in rows] and {r["status"] for r in rows} == {"pending"}
        assert [r["activity"] for r in rows if r["log_event_id"] == waiting] == ["'" + formula]
        assert coord.amina not in shown.decode()  # another organisation's member
        sheet = load_workbook(io.BytesIO(_download(page, "The hours shown, waiting for approval (Excel)"))).active
        cells = {row[0].value: row[-1] for row in sheet.iter_rows(min_row=2)}
        assert cells[waiting].value == "'" + formula and cells[waiting].data_type == "s"
        everything = _download(page, "All your organisation's hours, with what was decided (CSV)").decode()
        assert "approved" in everything and waiting in everything

        page.goto(coord.url + f"/app/members/{coord.bo}/hours")
        _shots(page, screenshot_dir, "coordinator-hours-downloads")
        theirs = list(csv.DictReader(io.StringIO(_download(page, "Vol co-bo's hours, with what was decided (CSV)")
                                                 .decode())))
        assert theirs and {r["volunteer_id"] for r in theirs} == {coord.bo}
        page.goto(coord.url + "/app/hours/group")
        _axe(page)
        assert page.get_by_role("link", name="All your organisation's hours, with what was decided (Excel)").count()
    finally:
        context.close()

    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, coord.url, people.new_card(coord.engine, coord.desk.id))
        page.goto(coord.url + "/app/open-bookings")
        _shots(page, screenshot_dir, "partner-bookings-download")
        takings = list(csv.DictReader(io.StringIO(_download(
            page, "Credits taken and bookings attended (CSV)").decode())))
        assert [(r["kind"], r["event_id"], r["volunteer_id"], r["credits"]) for r in takings] == [
            ("redemption", taken, coord.amina, "0.50")]
    finally:
        context.close()

    garden, _ = _client(coord, coord.garden_coordinator)
    desk, _ = _client(coord, coord.desk)
    with garden, desk:  # the links read the API with the session, on the API's own rules
        assert garden.get("/v1/organisations/co-garden/hours.csv").status_code == 200
        for client, path in ((garden, "/v1/organisations/co-library/hours.csv"),
                             (garden, "/v1/organisations/co-library/hours.xlsx"),
                             (garden, "/v1/partners/co-lido/redemptions.csv"),
                             (desk, "/v1/organisations/co-library/hours.csv")):
            refused = client.get(path)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", path
