"""The partner's front desk in Debian's Chromium against the real stack (PostgreSQL, broker, worker, API): it lists
an opportunity and changes it, marks bookings attended, cancelled or not come to, and takes credits with a scanned
spend code after seeing the amount; every page checked with axe-core at phone and desktop sizes and used with the keyboard
(docs/design.md §8.3). A desk sees and changes its own partner's opportunities and bookings only."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.browser.test_web import PHONE, _context, _sign_in_with_card
from tests.browser.test_web import _shots as _web_shots
from tests.e2e.api_stack import Api, ready_api
from tests.e2e.conftest import _make_stack
from web import people
from web.people import Person, PersonRole

ADMIN_TOKEN = "tc_part_admin_" + "8" * 32
AREA = "E09000030"
LIDO, ARTS, GARDEN = "part-lido", "part-arts", "part-garden"


@dataclass
class PartnerStack:
    url: str
    api: Api
    engine: Any
    desk: Person  # at LIDO
    other_desk: Person  # at ARTS
    coordinator: Person  # at GARDEN, a community organisation
    volunteer: Person
    volunteer_token: str
    other_volunteer_token: str
    other_volunteer_id: str
    arts_opportunity: str
    arts_booking: str  # the volunteer's booking of the ARTS opportunity


@pytest.fixture(scope="module")
def partner(embedded_postgres: str, primary_template: str, kafka_bootstrap: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartnerStack]:
    tmp = tmp_path_factory.mktemp("web-partner")
    for stack in _make_stack(embedded_postgres, primary_template, kafka_bootstrap, tmp):
        stack.start_worker()
        with ready_api({**stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN}, tmp / "api.log") as process:
            api = Api(process.url, ADMIN_TOKEN)
            api.organisation(GARDEN, ["community"], AREA, auto_approve=True)
            api.organisation(LIDO, ["partner"], AREA)
            api.organisation(ARTS, ["partner"], AREA)
            garden = api.token("org", org_id=GARDEN)
            ids = [api.volunteer(name, AREA, member_of=(GARDEN,)) for name in ("part-amina", "part-bo")]
            for volunteer_id in ids:  # 10 credits each
                logged = api.post("/v1/hours", garden, {"volunteer_id": volunteer_id, "org_id": GARDEN,
                                                        "date": "2026-11-30", "minutes": 600,
                                                        "activity": "Gardening"})
                api.applied(api.accepted(logged), garden)
            tokens = [api.token("volunteer", volunteer_id=volunteer_id) for volunteer_id in ids]
            pottery = api.post("/v1/opportunities", api.token("org", org_id=ARTS), {
                "title": "Pottery evening", "category": "course", "cost": "3", "area": AREA})
            assert pottery.status_code == 201, pottery.text
            arts_booking = api.accepted(api.post("/v1/bookings", tokens[0], {"opportunity_id": pottery.json()["id"]}))
            api.applied(arts_booking)
            try:
                yield PartnerStack(
                    process.url, api, stack.engine,
                    people.add_person(stack.engine, "Sam at the Lido", PersonRole.FRONT_DESK, org_id=LIDO),
                    people.add_person(stack.engine, "Ari at the Arts", PersonRole.FRONT_DESK, org_id=ARTS),
                    people.add_person(stack.engine, "Cai at the Garden", PersonRole.COORDINATOR, org_id=GARDEN),
                    people.add_person(stack.engine, "Amina", PersonRole.VOLUNTEER, volunteer_id=ids[0]),
                    tokens[0], tokens[1], ids[1], pottery.json()["id"], arts_booking)
            finally:
                api.close()


def _shots(page: Any, directory: Path, name: str) -> None:
    _web_shots(page, directory, f"partner-{name}")  # ends at the phone's size
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "wider than the phone"


def _client(stack: PartnerStack, person: Person) -> tuple[httpx.Client, str]:
    cookie, session = people.start_session(stack.engine, person)
    return (httpx.Client(base_url=stack.url, cookies={"tc_session": cookie}, follow_redirects=False, timeout=30),
            session.csrf_token)


def _follow(page: Any, name: str, url: str) -> None:
    """With the keyboard: focus the link by its name and press Enter."""
    page.get_by_role("link", name=name, exact=True).focus()
    page.keyboard.press("Enter")
    page.wait_for_url(url)


def _opportunity_id(stack: PartnerStack, title: str) -> str:
    with stack.engine.connect() as conn:
        return str(conn.execute(text("SELECT id FROM opportunities WHERE title = :t"), {"t": title}).scalar_one())


def _available(stack: PartnerStack, token: str, volunteer_id: str) -> str:
    balance = stack.api.get(f"/v1/volunteers/{volunteer_id}/balance", token)
    assert balance.status_code == 200, balance.text
    return str(balance.json()["available"])


def test_a_front_desk_lists_an_opportunity_changes_it_and_settles_its_bookings(
        partner: PartnerStack, browser: Any, screenshot_dir: Path) -> None:
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, partner.url, people.new_card(partner.engine, partner.desk.id))
        _follow(page, "Your opportunities", partner.url + "/app/listings")
        assert "Pottery evening" not in page.content()  # another partner's
        assert "You have not listed any opportunities yet." in page.locator("main").inner_text()
        _shots(page, screenshot_dir, "opportunities-empty")

        _follow(page, "List an opportunity", partner.url + "/app/listings/new")
        assert page.locator("#area").input_value() == AREA  # the partner's own, filled in
        page.locator("#area").fill("")
        page.locator("#start_date").fill("2020-01-01")
        with page.expect_navigation():  # the answer, not the page before it
            page.get_by_role("button", name="List the opportunity").press("Enter")
        summary = page.locator(".error-summary").inner_text()
        for words in ("Enter a title", "Choose what kind", "Enter what it costs", "Enter an area code",
                      "Enter the time it starts"):
            assert words in summary, summary
        _shots(page, screenshot_dir, "opportunity-errors")
        page.locator(".error-summary a", has_text="Enter a title").press("Enter")  # the summary links to the field
        assert page.evaluate("document.activeElement.id") == "title"

        page.keyboard.type("Lane swim")
        page.locator("#category").select_option("sport")
        page.locator("#cost").fill("2")
        page.locator("#capacity").fill("8")
        page.locator("#area").fill(AREA)
        page.locator("#start_date").fill("2030-06-01")
        page.locator("#start_time").fill("07:30")
        with page.expect_navigation():  # the answer, not the page before it
            page.locator("#start_time").press("Enter")
        assert page.get_by_role("status").inner_text().strip() == "Listed: Lane swim."
        row = page.locator("ul.items > li", has_text="Lane swim").inner_text()
        assert "Saturday 1 June 2030, 07:30" in row and "2 credits" in row and "Places\n8" in row, row
        _shots(page, screenshot_dir, "opportunity-listed")

        opportunity_id = _opportunity_id(partner, "Lane swim")
        listed = partner.api.get("/v1/opportunities", partner.volunteer_token, params={"partner_id": LIDO}).json()
        assert [(o["title"], o["cost"], o["capacity"], o["starts_at"]) for o in listed] == [
            ("Lane swim", "2.00", 8, "2030-06-01T06:30:00Z")]  # 07:30 in London is 06:30 UTC in June

        page.get_by_role("link", name="Change Lane swim").press("Enter")
        page.wait_for_url(partner.url + f"/app/listings/{opportunity_id}/edit")
        assert page.locator("#title").input_value() == "Lane swim"
        assert page.locator("#start_time").input_value() == "07:30"
        _shots(page, screenshot_dir, "opportunity-edit")
        page.locator("#title").fill("Early lane swim")
        page.locator("#capacity").fill("")
        page.locator("#start_time").fill("06:45")
        with page.expect_navigation():  # the answer, not the page before it
            page.get_by_role("button", name="Save the changes").press("Enter")
        assert page.get_by_role("status").inner_text().strip() == "Changed: Early lane swim."
        listed = partner.api.get("/v1/opportunities", partner.volunteer_token, params={"partner_id": LIDO}).json()
        assert [(o["title"], o["cost"], o["capacity"], o["starts_at"]) for o in listed] == [
            ("Early lane swim", "2.00", None, "2030-06-01T05:45:00Z")]

        booked = [partner.api.accepted(partner.api.post("/v1/bookings", token, {"opportunity_id": opportunity_id}))
                  for token in (partner.volunteer_token, partner.other_volunteer_token)]
        for event_id in booked:
            partner.api.applied(event_id)
        volunteer_id = partner.volunteer.volunteer_id
        assert volunteer_id is not None
        before = _available(partner, partner.volunteer_token, volunteer_id)

        _follow(page, "Open bookings", partner.url + "/app/open-bookings")
        items = page.locator("ul.items > li")
        assert items.count() == 2  # not the booking of another partner's opportunity
        assert "Pottery evening" not in page.content()
        first = items.filter(has_text=volunteer_id).inner_text()
        assert "Early lane swim" in first and "Saturday 1 June 2030, 06:45" in first and "2 credits" in first, first
        _shots(page, screenshot_dir, "bookings")

        with page.expect_navigation():  # the answer, not the page before it

            page.get_by_role("button", name=f"Cancel the booking of {volunteer_id} at Early lane swim").press("Enter")
        cancelled = page.get_by_role("status").inner_text().strip()
        assert cancelled == f"Cancelled: volunteer {volunteer_id} has 2 credits back.", cancelled
        assert _available(partner, partner.volunteer_token, volunteer_id) == f"{float(before) + 2:.2f}"
        assert page.locator("ul.items > li").count() == 1
        with page.expect_navigation():  # the answer, not the page before it
            page.get_by_role("button", name=re.compile(r"^Attended by v-")).press("Enter")
        assert re.fullmatch(r"Marked attended: volunteer \S+ paid 2 credits\.",
                            page.get_by_role("status").inner_text().strip())
        assert "There are no open bookings." in page.locator("main").inner_text()
        _shots(page, screenshot_dir, "bookings-settled")
        attended = partner.api.get(f"/v1/volunteers/{partner.other_volunteer_id}/balance",
                                   partner.other_volunteer_token).json()
        assert (attended["held"], attended["available"]) == ("0.00", "8.00")  # the 2 credits went to the Lido
        client, csrf = _client(partner, partner.desk)
        with client:  # a booking settled already is settled once
            again = client.post(f"/app/open-bookings/{booked[0]}/attend", data={"csrf_token": csrf})
            assert ("Nothing was changed: that booking was settled already (attended, cancelled, missed or released)."
                    in again.text)
        assert _available(partner, partner.volunteer_token, volunteer_id) == f"{float(before) + 2:.2f}"
    finally:
        context.close()


def test_a_front_desk_marks_a_volunteer_who_did_not_come(partner: PartnerStack, browser: Any,
                                                          screenshot_dir: Path) -> None:
    """By default a no-show costs the volunteer nothing: the held credits go back (docs/design.md §5.11)."""
    volunteer_id = partner.volunteer.volunteer_id
    assert volunteer_id is not None
    lido = partner.api.token("org", org_id=LIDO)
    listed = partner.api.post("/v1/opportunities", lido, {"title": "Aqua aerobics", "category": "sport", "cost": "1.5",
                                                           "area": AREA, "starts_at": "2030-07-02T09:00:00Z"})
    assert listed.status_code == 201, listed.text
    booked = partner.api.accepted(partner.api.post("/v1/bookings", partner.volunteer_token,
                                                   {"opportunity_id": listed.json()["id"]}))
    partner.api.applied(booked)
    before = _available(partner, partner.volunteer_token, volunteer_id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, partner.url, people.new_card(partner.engine, partner.desk.id))
        _follow(page, "Open bookings", partner.url + "/app/open-bookings")
        assert "If someone did not come, the credits go back to them." in page.locator("main").inner_text()
        row = page.locator("ul.items > li", has_text="Aqua aerobics")
        assert "1.50 credits" in row.inner_text()
        _shots(page, screenshot_dir, "bookings-no-show")
        with page.expect_navigation():  # the answer, not the page before it
            page.get_by_role("button", name=f"Did not come to Aqua aerobics: {volunteer_id}").press("Enter")
        said = page.get_by_role("status").inner_text().strip()
        assert said == f"Marked as did not come: volunteer {volunteer_id} has 1.50 credits back.", said
        assert "Aqua aerobics" not in page.locator("main").inner_text()
        _shots(page, screenshot_dir, "bookings-no-show-done")
        assert _available(partner, partner.volunteer_token, volunteer_id) == f"{float(before) + 1.5:.2f}"
        statement = partner.api.get(f"/v1/volunteers/{volunteer_id}/statement", partner.volunteer_token).json()
        assert (statement["items"][0]["kind"], statement["items"][0]["amount"]) == ("booking_no_show", "1.50")

        client, csrf = _client(partner, partner.desk)
        with client:  # settled once: a second "Did not come" changes nothing and says so in words
            again = client.post(f"/app/open-bookings/{booked}/no-show", data={"csrf_token": csrf})
            assert again.status_code == 422, again.text
            assert ("Nothing was changed: that booking was settled already (attended, cancelled, missed or released)."
                    in again.text)
        assert _available(partner, partner.volunteer_token, volunteer_id) == f"{float(before) + 1.5:.2f}"
    finally:
        context.close()


def test_the_desk_takes_credits_with_a_scanned_code_after_seeing_the_amount(
        partner: PartnerStack, browser: Any, screenshot_dir: Path) -> None:
    volunteer_id = partner.volunteer.volunteer_id
    assert volunteer_id is not None
    response = partner.api.post(f"/v1/volunteers/{volunteer_id}/spend-codes", partner.volunteer_token,
                                {"partner_id": LIDO, "max_amount": "3"})
    assert response.status_code == 201, response.text
    digits = response.json()["code"]
    before = _available(partner, partner.volunteer_token, volunteer_id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, partner.url, people.new_card(partner.engine, partner.desk.id))
        _follow(page, "Take credits with a spend code", partner.url + "/app/take")
        page.locator("#code").focus()  # scanned before the amount is typed: the code is kept
        page.keyboard.type(digits)  # a hand-held scanner types the digits, then Enter
        with page.expect_navigation():  # the answer, not the page before it
            page.keyboard.press("Enter")
        assert "Enter the credits to take" in page.locator(".error-summary").inner_text()
        assert page.locator("#code").input_value() == digits
        _shots(page, screenshot_dir, "take-no-amount")

        page.locator("#amount").fill("5")  # more than the code allows: refused before the confirm step
        page.locator("#code").focus()
        with page.expect_navigation():  # the answer, not the page before it
            page.keyboard.press("Enter")
        assert "more than the spend code allows" in page.locator(".error-summary").inner_text()

        page.locator("#amount").fill("2")
        page.locator("#code").fill("")
        page.locator("#code").focus()
        page.keyboard.type(digits)
        with page.expect_navigation():  # the answer, not the page before it
            page.keyboard.press("Enter")
        assert page.locator("h1").inner_text() == "Take 2 credits?", page.locator("main").inner_text()
        assert f"{digits[:4]} {digits[4:]}" in page.locator("dl.summary").inner_text()
        assert _available(partner, partner.volunteer_token, volunteer_id) == before  # nothing taken yet
        _shots(page, screenshot_dir, "take-confirm")

        with page.expect_navigation():  # the answer, not the page before it

            page.get_by_role("button", name="Take 2 credits").press("Enter")
        assert page.get_by_role("status").inner_text().strip() == "Done: 2 credits taken."
        assert _available(partner, partner.volunteer_token, volunteer_id) == f"{float(before) - 2:.2f}"
        _shots(page, screenshot_dir, "take-done")
    finally:
        context.close()


def test_the_take_steps_work_without_a_browser_and_a_wrong_code_never_reaches_the_confirm_step(
        partner: PartnerStack) -> None:
    client, csrf = _client(partner, partner.other_desk)
    with client:
        wrong = client.post("/app/take", data={"csrf_token": csrf, "amount": "1", "code": "0000 0000"})
        assert wrong.status_code == 422 and "not a spend code for this partner" in wrong.text
        assert "Take 1 credit?" not in wrong.text
        refused = client.post("/app/take", data={"amount": "1", "code": "0000 0000", "confirmed": "yes"})
        assert refused.status_code == 403 and "This form has expired" in refused.text


def test_volunteers_and_coordinators_cannot_use_the_front_desks_pages(partner: PartnerStack) -> None:
    pages = ["/app/listings", "/app/listings/new", f"/app/listings/{partner.arts_opportunity}/edit",
             "/app/open-bookings"]
    for person in (partner.volunteer, partner.coordinator):
        client, csrf = _client(partner, person)
        with client:
            for path in pages:
                refused = client.get(path)
                assert refused.status_code == 403 and "front desk" in refused.text, path
            for path in (*(f"/app/open-bookings/{partner.arts_booking}/{action}"
                           for action in ("attend", "cancel", "no-show")), "/app/listings/new"):
                assert client.post(path, data={"csrf_token": csrf, "title": "x"}).status_code == 403, path
    desk, _ = _client(partner, partner.other_desk)
    with desk:
        for path in pages:
            assert desk.get(path).status_code == 200, path
        assert "Pottery evening" in desk.get("/app/open-bookings").text
    assert _open(partner, partner.arts_booking)


def _open(stack: PartnerStack, booking: str) -> bool:
    with stack.engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT NOT EXISTS (SELECT 1 FROM entries s WHERE s.related_entry_id = b.id) FROM entries b "
            "WHERE b.event_id = :e"), {"e": booking}).scalar_one())


def test_a_desk_cannot_see_or_change_another_partners_opportunities_or_bookings(partner: PartnerStack) -> None:
    client, csrf = _client(partner, partner.desk)  # at the Lido; the pottery is the Arts'
    with client:
        assert "Pottery evening" not in client.get("/app/listings").text
        assert "Pottery evening" not in client.get("/app/open-bookings").text
        path = f"/app/listings/{partner.arts_opportunity}/edit"
        assert client.get(path).status_code == 403
        changed = client.post(path, data={"csrf_token": csrf, "title": "Lido pottery", "capacity": "",
                                          "start_date": "", "start_time": ""})
        assert changed.status_code == 403
        for action in ("attend", "cancel", "no-show"):
            assert client.post(f"/app/open-bookings/{partner.arts_booking}/{action}",
                               data={"csrf_token": csrf}).status_code == 403
        assert client.get("/app/listings/opp-nowhere/edit").status_code == 404
    listed = partner.api.get("/v1/opportunities", partner.volunteer_token, params={"partner_id": ARTS}).json()
    assert [o["title"] for o in listed] == ["Pottery evening"]
    assert _open(partner, partner.arts_booking)


def test_the_front_desks_forms_without_their_csrf_token_change_nothing(partner: PartnerStack) -> None:
    client, csrf = _client(partner, partner.other_desk)
    form = {"title": "No token swim", "category": "sport", "cost": "1", "capacity": "", "area": AREA,
            "start_date": "", "start_time": ""}
    with client:
        for token in ("", "not-the-token"):
            refused = client.post("/app/listings/new", data={**form, "csrf_token": token})
            assert refused.status_code == 403 and "This form has expired" in refused.text
            for action in ("attend", "cancel", "no-show"):
                assert client.post(f"/app/open-bookings/{partner.arts_booking}/{action}",
                                   data={"csrf_token": token}).status_code == 403
        with partner.engine.connect() as conn:
            made = conn.execute(text("SELECT count(*) FROM opportunities WHERE title = 'No token swim'")).scalar_one()
        assert made == 0
        assert _open(partner, partner.arts_booking)
        made = client.post("/app/listings/new", data={**form, "csrf_token": csrf})
        assert made.status_code == 200 and "Listed: No token swim." in made.text


def test_a_front_desk_lists_a_weekly_class_of_four_sessions_each_with_its_places(
        partner: PartnerStack, browser: Any, screenshot_dir: Path) -> None:
    """docs/design.md §5.13: "Does it repeat?" lists a series, shown as its sessions under its title."""
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, partner.url, people.new_card(partner.engine, partner.desk.id))
        page.goto(partner.url + "/app/listings/new")
        assert page.locator("#repeat").is_checked()  # "No" unless asked
        page.locator("#title").fill("Aqua fit")
        page.locator("#category").select_option("sport")
        page.locator("#cost").fill("1")
        page.locator("#capacity").fill("2")
        page.get_by_label("Yes, every week").check()
        page.locator("#sessions").fill("60")
        with page.expect_navigation():  # the answer, not the page before it
            page.get_by_role("button", name="List the opportunity").press("Enter")
        summary = page.locator(".error-summary").inner_text()
        assert "Enter how many sessions there are, a whole number from 2 to 52" in summary, summary
        assert page.get_by_label("Yes, every week").is_checked()  # kept as answered
        _shots(page, screenshot_dir, "series-errors")
        page.locator(".error-summary a", has_text="Enter how many sessions").press("Enter")
        assert page.evaluate("document.activeElement.id") == "sessions"
        page.keyboard.press("Control+A")
        page.keyboard.type("4")
        with page.expect_navigation():
            page.get_by_role("button", name="List the opportunity").press("Enter")
        assert "Enter the date and time the first session starts" in page.locator(".error-summary").inner_text()
        page.locator("#start_date").fill("2030-09-02")  # a Monday
        page.locator("#start_time").fill("18:00")
        with page.expect_navigation():
            page.locator("#start_time").press("Enter")
        assert page.get_by_role("status").inner_text().strip() == (
            "Listed: Aqua fit, 4 sessions every week from Monday 2 September 2030, 18:00.")

        with partner.engine.connect() as conn:
            series_id = conn.execute(text("SELECT series_id FROM opportunities WHERE id = (SELECT min(id) "
                                          "FROM opportunities WHERE title = 'Aqua fit')")).scalar_one()
        assert series_id is not None
        sessions = [f"{series_id}-{n}" for n in (1, 2, 3, 4)]
        booked = partner.api.accepted(partner.api.post("/v1/bookings", partner.other_volunteer_token,
                                                       {"opportunity_id": sessions[1]}))
        partner.api.applied(booked)

        page.goto(partner.url + "/app/listings")
        aqua = page.locator("ul.items > li", has_text="Aqua fit")
        assert aqua.count() == 1  # one entry for the series
        assert _rows(aqua) == [["Monday 2 September 2030, 18:00", "2 of 2 left"],
                               ["Monday 9 September 2030, 18:00", "1 of 2 left"],
                               ["Monday 16 September 2030, 18:00", "2 of 2 left"],
                               ["Monday 23 September 2030, 18:00", "2 of 2 left"]]
        _shots(page, screenshot_dir, "series-listed")
        page.get_by_role("link", name="Change Aqua fit on Monday 9 September 2030, 18:00").press("Enter")
        page.wait_for_url(partner.url + f"/app/listings/{sessions[1]}/edit")
        page.locator("#capacity").fill("5")
        with page.expect_navigation():
            page.get_by_role("button", name="Save the changes").press("Enter")
        listed = partner.api.get("/v1/opportunities", partner.volunteer_token, params={"series_id": series_id})
        assert [o["capacity"] for o in listed.json()] == [2, 5, 2, 2]  # that session only
    finally:
        context.close()


def _rows(item: Any) -> list[list[str]]:
    """A series' sessions table as its cells' words, but the Change link."""
    return [[" ".join(cell.split()) for cell in row.locator("th, td").all_inner_texts()[:2]]
            for row in item.locator("tbody tr").all()]
