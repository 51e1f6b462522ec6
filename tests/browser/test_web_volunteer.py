"""The volunteer's door in Debian's Chromium against the real stack (PostgreSQL, broker, worker, API): what is
held and for what, the statement in words and in pages, opportunities near them booked and cancelled with the
keyboard, their hours with what became of them; each page checked with axe-core at phone and desktop sizes, and
each refused to anyone else (docs/design.md §8.3)."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, text

from ledger.pg import schema
from tests.browser.test_web import _context, _shots, _sign_in_with_card
from tests.e2e.api_stack import Api, error_code, ready_api
from tests.e2e.conftest import _make_stack
from web import people
from web.people import Person, PersonRole

ADMIN_TOKEN = "tc_web_vol_admin_" + "7" * 32
AREA, OTHER_AREA = "E09000030", "E09000012"
SWIM_AT = "2027-01-09T10:00:00Z"  # a Saturday, 10:00 in London


@dataclass
class VolunteerStack:
    url: str
    api: Api
    engine: Any
    amina: Person
    bo: Person
    cy: Person
    desk: Person
    bo_token: str
    kitchen_token: str


@pytest.fixture(scope="module")
def vol(embedded_postgres: str, primary_template: str, kafka_bootstrap: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[VolunteerStack]:
    tmp = tmp_path_factory.mktemp("web-volunteer")
    for stack in _make_stack(embedded_postgres, primary_template, kafka_bootstrap, tmp):
        stack.start_worker()
        with ready_api({**stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN}, tmp / "api.log") as process:
            api = Api(process.url, ADMIN_TOKEN)
            with stack.engine.begin() as conn:
                conn.execute(insert(schema.areas), [
                    {"code": AREA, "name": "Tower Hamlets", "need_decile": 2, "population": 310_300, "source": "test"},
                    {"code": OTHER_AREA, "name": "Hackney", "need_decile": 1, "population": 259_200, "source": "test"}])
            api.organisation("v-garden", ["community"], AREA, auto_approve=True)
            api.organisation("v-kitchen", ["community"], AREA)
            api.organisation("v-lido", ["partner"], AREA)
            garden, kitchen = api.token("org", org_id="v-garden"), api.token("org", org_id="v-kitchen")
            ids = [api.volunteer(name, AREA, member_of=("v-garden", "v-kitchen")) for name in ("amina", "bo", "cy")]

            def log(token: str, org: str, volunteer_id: str, on: str, minutes: int, activity: str) -> str:
                logged = api.post("/v1/hours", token, {"volunteer_id": volunteer_id, "org_id": org, "date": on,
                                                       "minutes": minutes, "activity": activity})
                return api.applied(api.accepted(logged), token)["event_id"]

            for volunteer_id, minutes in zip(ids, (300, 120, 60)):
                log(garden, "v-garden", volunteer_id, "2026-11-30", minutes, "Gardening")
            log(kitchen, "v-kitchen", ids[0], "2026-12-01", 90, "Cooking lunch")  # left waiting
            refused = log(kitchen, "v-kitchen", ids[0], "2026-11-29", 60, "Washing up")
            api.applied(api.accepted(api.post(f"/v1/hours/{refused}/reject", kitchen,
                                              {"reason": "The kitchen was closed that day"})), kitchen)
            for body in (
                {"id": "v-swim", "title": "Swim session", "category": "sport", "cost": "2", "capacity": 3,
                 "area": AREA, "starts_at": SWIM_AT},
                {"id": "v-pottery", "title": "Pottery course", "category": "course", "cost": "40", "capacity": 8,
                 "area": AREA, "starts_at": "2027-01-12T18:00:00Z"},
                {"id": "v-chess", "title": "Chess club", "category": "culture", "cost": "1", "capacity": 1,
                 "area": AREA, "starts_at": "2027-01-14T18:00:00Z"},
                {"id": "v-hackney", "title": "Hackney swim", "category": "sport", "cost": "1", "area": OTHER_AREA,
                 "starts_at": SWIM_AT},
            ):
                made = api.post("/v1/opportunities", api.admin, {"partner_id": "v-lido", **body})
                assert made.status_code == 201, made.text
            amina = people.add_person(stack.engine, "Amina", PersonRole.VOLUNTEER, volunteer_id=ids[0])
            bo = people.add_person(stack.engine, "Bo", PersonRole.VOLUNTEER, volunteer_id=ids[1])
            cy = people.add_person(stack.engine, "Cy", PersonRole.VOLUNTEER, volunteer_id=ids[2])
            desk = people.add_person(stack.engine, "Sam at the Lido", PersonRole.FRONT_DESK, org_id="v-lido",
                                     email="sam@v-lido.example")
            try:
                yield VolunteerStack(process.url, api, stack.engine, amina, bo, cy, desk,
                                     api.token("volunteer", volunteer_id=ids[1]), kitchen)
            finally:
                api.close()


def _client(vol: VolunteerStack, person: Person) -> tuple[httpx.Client, str]:
    cookie, session = people.start_session(vol.engine, person)
    return (httpx.Client(base_url=vol.url, cookies={"tc_session": cookie}, follow_redirects=False, timeout=30),
            session.csrf_token)


def _lines(page: Any, selector: str) -> list[str]:
    return [" ".join(line.split()) for line in page.locator(selector).all_inner_texts()]


def _press(page: Any, role: str, name: str) -> None:
    """With the keyboard alone: focus the link or button, press Enter, wait for the page it brings."""
    page.get_by_role(role, name=name).focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_a_volunteer_books_sees_what_is_held_reads_the_statement_and_cancels(vol: VolunteerStack, browser: Any,
                                                                            screenshot_dir: Path) -> None:
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, vol.url, people.new_card(vol.engine, vol.amina.id))
        assert page.locator(".panel").inner_text().strip() == "You have 5 credits to spend."
        assert page.locator("ul.held").count() == 0

        _press(page, "link", "Opportunities near you")
        assert page.url == vol.url + "/app/opportunities"
        titles = _lines(page, "li.opportunity h2")
        assert titles == ["Swim session", "Pottery course", "Chess club"]  # her own area, soonest first
        swim = page.locator("li.opportunity", has_text="Swim session")
        assert "Saturday 9 January at 10:00" in swim.inner_text() and "3 places left" in swim.inner_text()
        assert "2 credits" in swim.inner_text() and "Org v-lido" in swim.inner_text()
        _shots(page, screenshot_dir, "volunteer-opportunities")

        page.locator("#category").focus()
        page.keyboard.type("Sport")  # a closed list picks the option its name starts with
        _press(page, "button", "Show opportunities")
        assert _lines(page, "li.opportunity h2") == ["Swim session"]
        page.locator("#area").focus()
        page.keyboard.type("Hackney")
        _press(page, "button", "Show opportunities")
        assert _lines(page, "li.opportunity h2") == ["Hackney swim"]
        page.goto(vol.url + "/app/opportunities?date=2027-01-12")
        assert _lines(page, "li.opportunity h2") == ["Pottery course"]
        page.goto(vol.url + "/app/opportunities?date=next+week")
        assert "Enter a date like" in page.locator(".error-summary").inner_text()
        _shots(page, screenshot_dir, "volunteer-opportunities-error")

        page.goto(vol.url + "/app/opportunities")
        _press(page, "button", "Book Pottery course for 40 credits")  # more than she has
        assert page.get_by_role("status").inner_text().strip() == "Not booked: there are not enough credits for this."
        _shots(page, screenshot_dir, "volunteer-not-booked")
        _press(page, "link", "Back to opportunities")
        _press(page, "button", "Book Swim session for 2 credits")
        assert page.get_by_role("status").inner_text().strip() == (
            "Booked: 2 credits are held for Swim session. Cancel before it starts and they come back to you.")
        _shots(page, screenshot_dir, "volunteer-booked")

        _press(page, "link", "Back to your credits")
        assert " ".join(page.locator(".panel").inner_text().split()) == (
            "You have 3 credits to spend. 2 credits are held for your bookings.")
        assert _lines(page, "ul.held li") == [
            "2 credits are held for Swim session at Org v-lido, Saturday 9 January at 10:00."]
        _shots(page, screenshot_dir, "volunteer-home-held")

        _press(page, "link", "Your statement")
        what = _lines(page, "ul.statement .what")
        assert what == ["Held 2 credits for Swim session at Org v-lido", "Earned 5 credits for hours at Org v-garden"]
        assert "−2 credits" in page.locator("ul.statement").inner_text()
        _shots(page, screenshot_dir, "volunteer-statement")

        page.goto(vol.url + "/app/opportunities")
        swim = page.locator("li.opportunity", has_text="Swim session")
        assert "2 places left" in swim.inner_text() and "You have booked this" in swim.inner_text()
        _press(page, "button", "Cancel my booking for Swim session")
        assert page.get_by_role("status").inner_text().strip() == (
            "Cancelled: 2 credits for Swim session are back to spend.")
        _shots(page, screenshot_dir, "volunteer-cancelled")
        page.goto(vol.url + "/app")
        assert page.locator(".panel").inner_text().strip() == "You have 5 credits to spend."
        assert page.locator("ul.held").count() == 0
        page.goto(vol.url + "/app/statement")
        assert _lines(page, "ul.statement .what")[0] == "2 credits back: Swim session was cancelled"
    finally:
        context.close()


def test_a_volunteer_reads_their_hours_waiting_approved_and_not_approved(vol: VolunteerStack, browser: Any,
                                                                        screenshot_dir: Path) -> None:
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, vol.url, people.new_card(vol.engine, vol.amina.id))
        _press(page, "link", "Your hours")
        assert page.url == vol.url + "/app/hours"
        assert _lines(page, "ul.hours li") == [
            "1 December 2026 1 hour 30 minutes of Cooking lunch at Org v-kitchen Waiting for approval",
            "30 November 2026 5 hours of Gardening at Org v-garden Approved: earned 5 credits",
            "29 November 2026 1 hour of Washing up at Org v-kitchen Not approved: The kitchen was closed that day",
        ]
        _shots(page, screenshot_dir, "volunteer-hours")
    finally:
        context.close()


def test_the_statement_comes_in_pages_newest_first(vol: VolunteerStack, browser: Any, screenshot_dir: Path) -> None:
    cy_token = vol.api.token("volunteer", volunteer_id=vol.cy.volunteer_id)
    for _ in range(21):  # a penny at a time: 22 lines with the hours
        paid = vol.api.post("/v1/redemptions", cy_token, {"partner_id": "v-lido", "amount": "0.01"})
        vol.api.applied(vol.api.accepted(paid), cy_token)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, vol.url, people.new_card(vol.engine, vol.cy.id))
        page.goto(vol.url + "/app/statement")
        first = _lines(page, "ul.statement .what")
        assert first == ["Paid 0.01 credits at Org v-lido"] * 20
        _shots(page, screenshot_dir, "volunteer-statement-paged")
        _press(page, "link", "Older entries")
        assert _lines(page, "ul.statement .what") == ["Paid 0.01 credits at Org v-lido",
                                                      "Earned 1 credit for hours at Org v-garden"]
        assert page.get_by_role("link", name="Older entries").count() == 0
        _shots(page, screenshot_dir, "volunteer-statement-older")
    finally:
        context.close()


def test_a_volunteer_never_cancels_another_volunteers_booking(vol: VolunteerStack) -> None:
    booked = vol.api.post("/v1/bookings", vol.bo_token, {"opportunity_id": "v-chess"})
    booking = vol.api.applied(vol.api.accepted(booked), vol.bo_token)["event_id"]
    amina, csrf = _client(vol, vol.amina)
    with amina:
        chess = amina.get("/app/opportunities")
        assert "No places left" in chess.text and "Book Chess club" not in chess.text
        assert f"/app/bookings/{booking}/cancel" not in chess.text  # not offered to her
        refused = amina.post(f"/app/bookings/{booking}/cancel", data={"csrf_token": csrf})
        assert refused.status_code == 403 and "You can cancel your own bookings only" in refused.text
    assert vol.api.balance(vol.bo.volunteer_id)["held"] == "1.00"  # still held: nothing was cancelled
    bo, bo_csrf = _client(vol, vol.bo)
    with bo:
        assert f"/app/bookings/{booking}/cancel" in bo.get("/app/opportunities").text
        home = bo.get("/app")
        assert "1 credit is held for Chess club at Org v-lido" in home.text
        cancelled = bo.post(f"/app/bookings/{booking}/cancel", data={"csrf_token": bo_csrf})
        assert cancelled.status_code == 200 and "Cancelled: 1 credit for Chess club is back to spend." in cancelled.text
        again = bo.post(f"/app/bookings/{booking}/cancel", data={"csrf_token": bo_csrf})
        assert ("Not cancelled: that booking was settled already (attended, cancelled, missed or released)."
                in again.text)
    assert vol.api.balance(vol.bo.volunteer_id)["held"] == "0.00"


def test_a_volunteer_never_sees_another_volunteers_statement_hours_or_bookings(vol: VolunteerStack) -> None:
    bo, _ = _client(vol, vol.bo)
    with bo:
        statement = bo.get("/app/statement", params={"volunteer_id": vol.amina.volunteer_id})
        assert statement.status_code == 200
        assert "Earned 2 credits for hours at Org v-garden" in statement.text
        assert "Earned 5 credits" not in statement.text and "Swim session" not in statement.text
        hours = bo.get("/app/hours", params={"volunteer_id": vol.amina.volunteer_id})
        assert "2 hours of Gardening" in hours.text
        assert "Cooking lunch" not in hours.text and "Washing up" not in hours.text and "5 hours" not in hours.text
        assert "Amina" not in statement.text + hours.text + bo.get("/app").text


def test_the_volunteer_pages_are_for_volunteers_only(vol: VolunteerStack) -> None:
    amina, _ = _client(vol, vol.amina)
    desk, desk_csrf = _client(vol, vol.desk)
    with amina, desk:
        for path in ("/app/statement", "/app/opportunities", "/app/hours"):
            assert amina.get(path).status_code == 200, path
            refused = desk.get(path)
            assert refused.status_code == 403 and "This page is for volunteers." in refused.text, path
        booked = desk.post("/app/opportunities/v-swim/book", data={"csrf_token": desk_csrf})
        assert booked.status_code == 403 and "This page is for volunteers." in booked.text
        some_booking = "00000000-0000-4000-8000-000000000000"
        assert desk.post(f"/app/bookings/{some_booking}/cancel", data={"csrf_token": desk_csrf}).status_code == 403
    with httpx.Client(base_url=vol.url, timeout=30) as anonymous:
        for path in ("/app/statement", "/app/opportunities", "/app/hours"):
            assert anonymous.get(path).headers["location"] == "/app/sign-in"


def test_booking_without_the_forms_csrf_token_is_refused_and_books_nothing(vol: VolunteerStack) -> None:
    cy, _ = _client(vol, vol.cy)
    with cy:
        for token in ("", "not-the-token"):
            refused = cy.post("/app/opportunities/v-swim/book", data={"csrf_token": token})
            assert refused.status_code == 403 and "This form has expired" in refused.text
    with vol.engine.connect() as conn:
        held = conn.execute(text("SELECT count(*) FROM entries "
                                 "WHERE volunteer_id = :v AND kind = 'opportunity_booked'"),
                            {"v": vol.cy.volunteer_id}).scalar_one()
    assert held == 0


# --- privacy: consent that can change, and everything held about them (docs/design.md §5.7) ----------------------


def _answers(vol: VolunteerStack, volunteer_id: str) -> tuple[Any, ...]:
    with vol.engine.connect() as conn:
        return tuple(conn.execute(text("SELECT consent_stats, age_band, seb FROM volunteers WHERE id = :v"),
                                  {"v": volunteer_id}).one())


def test_a_volunteer_withdraws_and_gives_consent_again_and_downloads_their_data(vol: VolunteerStack, browser: Any,
                                                                               screenshot_dir: Path) -> None:
    cy = vol.cy.volunteer_id
    assert cy is not None
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, vol.url, people.new_card(vol.engine, vol.cy.id))
        _press(page, "link", "Your privacy and your data")
        assert page.url == vol.url + "/app/privacy"
        assert "You agreed to your age and background being counted" in page.locator(".panel").inner_text()
        assert _lines(page, "ul.history li")[-1].endswith("agreed by the programme's administrator")
        _shots(page, screenshot_dir, "volunteer-privacy")

        page.get_by_label("No", exact=True).check()
        _press(page, "button", "Save my answer")
        assert "your answers about them are deleted" in page.get_by_role("status").inner_text()
        assert "are not counted" in page.locator(".panel").inner_text()
        assert _lines(page, "ul.history li")[0].endswith("did not agree by you")
        assert _answers(vol, cy) == (False, None, None)
        _shots(page, screenshot_dir, "volunteer-privacy-withdrawn")

        page.get_by_label("Yes, I agree").check()
        page.get_by_label("Age group").select_option("25-34")
        _press(page, "button", "Save my answer")
        assert _answers(vol, cy) == (True, "25-34", None)
        assert page.get_by_label("Age group").input_value() == "25-34", "the form shows the answer held"

        with page.expect_download() as download:
            page.get_by_role("link", name="Download as one JSON file, to give to another service").click()
        data = json.loads(Path(download.value.path()).read_text())
        assert data["profile"][0]["volunteer_id"] == cy and data["profile"][0]["age_band"] == "25-34"
        assert [c["consent_stats"] for c in data["consent"]] == [True, False, True]
        statement = vol.api.get(f"/v1/volunteers/{cy}/statement", vol.api.admin, params={"limit": 200}).json()
        spent = {row["entry_id"] for row in data["ledger"] if row["credits"] == "to spend"}
        assert spent == {line["entry_id"] for line in statement["items"]} and spent
        assert {row["what"] for row in data["sign_in"]} >= {"account", "sign-in card", "session"}
        assert not {"code_sha256", "csrf_token", "token_sha256"} & {k for rows in data.values() for r in rows for k in r}

        with page.expect_download() as bundle_download:
            page.get_by_role("link", name="Download as spreadsheets (CSV files in a zip)").click()
        with zipfile.ZipFile(bundle_download.value.path()) as bundle:
            assert set(bundle.namelist()) == {"README.txt", *(f"{name}.csv" for name in data)}
            hours = list(csv.DictReader(io.StringIO(bundle.read("hours.csv").decode("utf-8-sig"))))
        assert [(row["minutes"], row["activity"], row["status"]) for row in hours] == [("60", "Gardening", "approved")]
    finally:
        context.close()


def test_a_coordinator_records_a_members_answer_against_themself(vol: VolunteerStack, browser: Any,
                                                                screenshot_dir: Path) -> None:
    bo = vol.bo.volunteer_id
    coordinator = people.add_person(vol.engine, "Kit at the kitchen", PersonRole.COORDINATOR, org_id="v-kitchen",
                                     email=f"kit-{uuid.uuid4().hex[:6]}@v-kitchen.example")
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, vol.url, people.new_card(vol.engine, coordinator.id))
        page.goto(vol.url + "/app/members")
        _press(page, "link", "Consent to statistics for Vol bo")
        _shots(page, screenshot_dir, "coordinator-consent")
        _press(page, "button", "Save their answer")  # nothing chosen differs: nothing changes
        page.get_by_label("No", exact=True).check()
        _press(page, "button", "Save their answer")
        assert "Vol bo does not agree" in page.get_by_role("status").inner_text()
        assert _lines(page, "ul.history li")[0].endswith("did not agree by Org v-kitchen")
    finally:
        context.close()
    with vol.engine.connect() as conn:
        recorded = conn.execute(text("SELECT recorded_by, person_id FROM consent_changes WHERE volunteer_id = :v "
                                     "ORDER BY id DESC LIMIT 1"), {"v": bo}).one()
        asked = conn.execute(text("SELECT person_id FROM event_requests WHERE type = 'ConsentChanged' "
                                  "ORDER BY created_at DESC LIMIT 1")).scalar_one()
    assert tuple(recorded) == ("org:v-kitchen", coordinator.id) and asked == coordinator.id
    outsider = people.add_person(vol.engine, "Pat at the lido", PersonRole.FRONT_DESK, org_id="v-lido")
    desk, desk_csrf = _client(vol, outsider)
    garden_coordinator = people.add_person(vol.engine, "Gus at the garden", PersonRole.COORDINATOR, org_id="v-garden")
    with desk:
        assert desk.get(f"/app/members/{bo}/consent").status_code == 403
        assert desk.get("/app/privacy").status_code == 403
        refused = desk.post(f"/app/members/{bo}/consent", data={"csrf_token": desk_csrf, "consent_stats": "yes"})
        assert refused.status_code == 403
    other = vol.api.volunteer("dee", AREA, member_of=("v-lido",))
    gus, gus_csrf = _client(vol, garden_coordinator)
    with gus:
        assert gus.get(f"/app/members/{other}/consent").status_code == 403
        assert gus.post(f"/app/members/{other}/consent",
                        data={"csrf_token": gus_csrf, "consent_stats": "no"}).status_code == 403
        assert gus.post(f"/app/members/{bo}/consent", data={"consent_stats": "yes"}).status_code == 403  # no CSRF
    assert _answers(vol, other)[0] is True and _answers(vol, bo)[0] is False


def test_consent_and_the_export_over_the_api_for_each_role(vol: VolunteerStack) -> None:
    api, amina, bo = vol.api, vol.amina.volunteer_id, vol.bo.volunteer_id
    lead = api.token("lead")
    lido, kitchen = api.token("org", org_id="v-lido"), vol.kitchen_token
    amina_token = api.token("volunteer", volunteer_id=amina)
    consent, export = f"/v1/volunteers/{amina}/consent", f"/v1/volunteers/{amina}/export"
    for path in (consent, export, export + ".zip"):
        assert error_code(api.get(path, None)) == (401, "unauthenticated")
        assert error_code(api.get(path, vol.bo_token)) == (403, "forbidden"), path
        assert error_code(api.get(path, lead)) == (403, "forbidden"), path
        assert api.get(path, amina_token).status_code == 200, path
        assert api.get(path, api.admin).status_code == 200, path
    assert error_code(api.get(consent, lido)) == (403, "not_a_member")
    assert api.get(consent, kitchen).json()["consent_stats"] is True, "a member's organisation reads the answer"
    assert error_code(api.get(export, kitchen)) == (403, "forbidden"), "but not the whole record"
    assert error_code(api.get(export, lido)) == (403, "forbidden")
    assert error_code(api.get("/v1/volunteers/v-000000000000/export", api.admin)) == (404, "unknown_volunteer")

    assert error_code(api.request("PUT", consent, None, {"consent_stats": False})) == (401, "unauthenticated")
    for token, code in ((vol.bo_token, "forbidden"), (lead, "forbidden"), (lido, "not_a_member")):
        assert error_code(api.request("PUT", consent, token, {"consent_stats": False})) == (403, code)
    assert error_code(api.request("PUT", consent, amina_token, {"consent_stats": False, "age_band": "65+"})) == (
        422, "answers_without_consent")
    assert _answers(vol, amina)[0] is True, "nothing refused changed anything"
    changed = api.request("PUT", consent, amina_token, {"consent_stats": True, "age_band": "45-54", "seb": "lower"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["age_band"], changed.json()["seb"]) == ("45-54", "lower")
    assert len(changed.json()["history"]) == 1, "the same consent with new answers adds no history"
    withdrawn = api.request("PUT", consent, kitchen, {"consent_stats": False})
    assert withdrawn.json()["history"][-1]["recorded_by"] == "org:v-kitchen"
    assert _answers(vol, amina) == (False, None, None)
    assert api.request("PUT", consent, api.admin, {"consent_stats": True}).json()["consent_stats"] is True
    assert api.get(f"/v1/volunteers/{bo}/export.zip", vol.bo_token).headers["content-type"] == "application/zip"


def test_an_admin_answers_a_subject_access_request_from_the_command_line(vol: VolunteerStack, tmp_path: Path) -> None:
    url = vol.engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": url}
    out = tmp_path / "amina.zip"
    done = subprocess.run([sys.executable, "-m", "timecredits.cli", "export-volunteer", vol.amina.volunteer_id or "",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Wrote everything held about {vol.amina.volunteer_id}" in done.stdout
    with zipfile.ZipFile(out) as bundle:
        profile = next(csv.DictReader(io.StringIO(bundle.read("profile.csv").decode("utf-8-sig"))))
    assert profile["volunteer_id"] == vol.amina.volunteer_id and profile["name"] == "Vol amina"
    unknown = subprocess.run([sys.executable, "-m", "timecredits.cli", "export-volunteer", "v-000000000000",
                              "--out", str(tmp_path / "x.json")], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert unknown.returncode == 1 and "no volunteer v-000000000000" in unknown.stdout + unknown.stderr


def test_a_volunteer_joins_the_waiting_list_of_a_full_opportunity_and_books_the_place_offered(
        vol: VolunteerStack, browser: Any, screenshot_dir: Path) -> None:
    from datetime import UTC, datetime

    from ledger.pg.waitlist import offer_places

    made = vol.api.post("/v1/opportunities", vol.api.admin, {
        "partner_id": "v-lido", "id": "v-yoga", "title": "Yoga class", "category": "other", "cost": "1",
        "capacity": 1, "area": OTHER_AREA, "starts_at": "2027-01-16T09:00:00Z"})
    assert made.status_code == 201, made.text
    # The place goes first to a volunteer of this test's own, with a credit to book it.
    yogi = vol.api.volunteer("yogi", AREA, member_of=("v-garden",))
    garden = vol.api.token("org", org_id="v-garden")
    vol.api.applied(vol.api.accepted(vol.api.post("/v1/hours", garden, {
        "volunteer_id": yogi, "org_id": "v-garden", "date": "2026-11-30", "minutes": 60, "activity": "Weeding"})),
        garden)
    cy_token = vol.api.token("volunteer", volunteer_id=yogi)
    booked = vol.api.accepted(vol.api.post("/v1/bookings", cy_token, {"opportunity_id": "v-yoga"}))
    vol.api.applied(booked, cy_token)
    listing = f"{vol.url}/app/opportunities?area={OTHER_AREA}"
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, vol.url, people.new_card(vol.engine, vol.amina.id))
        page.goto(listing)
        yoga = page.locator("li.opportunity", has_text="Yoga class")
        assert "No places left" in yoga.inner_text() and "Book Yoga class" not in yoga.inner_text()
        _press(page, "button", "Join the waiting list for Yoga class")
        assert page.get_by_role("status").inner_text().strip().startswith(
            "You are number 1 on the waiting list for Yoga class.")
        _shots(page, screenshot_dir, "volunteer-waitlist-joined")
        page.goto(listing)
        assert "You are number 1 on the waiting list." in page.locator("li.opportunity", has_text="Yoga class").inner_text()
        _shots(page, screenshot_dir, "volunteer-waitlist-waiting")

        # The first cancels; the offer job holds the place for Amina, who is told on her home page.
        vol.api.applied(vol.api.accepted(vol.api.post(f"/v1/bookings/{booked}/cancel", cy_token)), cy_token)
        assert [o.volunteer_id for o in offer_places(vol.engine, datetime.now(UTC)).offered] == [vol.amina.volunteer_id]
        page.goto(vol.url + "/app")
        assert _lines(page, "ul.offers li")[0].startswith("A place on Yoga class is held for you until ")
        _shots(page, screenshot_dir, "volunteer-home-offer")

        bo, bo_csrf = _client(vol, vol.bo)
        with bo:
            refused = bo.post("/app/opportunities/v-yoga/book", data={"csrf_token": bo_csrf})
            assert "Not booked: there are no places left on Yoga class." in refused.text

        page.goto(listing)
        assert "A place is held for you until" in page.locator("li.opportunity", has_text="Yoga class").inner_text()
        _press(page, "button", "Book Yoga class for 1 credit")
        assert page.get_by_role("status").inner_text().strip().startswith("Booked: 1 credit is held for Yoga class.")
        page.goto(vol.url + "/app")
        assert page.locator("ul.offers").count() == 0
    finally:
        context.close()


def test_a_volunteer_sees_a_weekly_class_as_its_sessions_and_books_session_2(
        vol: VolunteerStack, browser: Any, screenshot_dir: Path) -> None:
    """docs/design.md §5.13: a series' sessions under its title, each with its date and places, booked alone."""
    made = vol.api.post("/v1/opportunities", vol.api.admin, {
        "partner_id": "v-lido", "id": "v-aqua", "title": "Aqua fit", "category": "sport", "cost": "1",
        "capacity": 2, "area": OTHER_AREA, "starts_at": "2027-01-18T18:00:00Z",
        "repeat": {"every": "week", "sessions": 4}})
    assert made.status_code == 201, made.text
    swimmer = vol.api.volunteer("aqua-dee", AREA, member_of=("v-garden",))
    garden = vol.api.token("org", org_id="v-garden")
    vol.api.applied(vol.api.accepted(vol.api.post("/v1/hours", garden, {
        "volunteer_id": swimmer, "org_id": "v-garden", "date": "2026-11-30", "minutes": 120,
        "activity": "Weeding"})), garden)
    dee = people.add_person(vol.engine, "Dee", PersonRole.VOLUNTEER, volunteer_id=swimmer)
    listing = f"{vol.url}/app/opportunities?area={OTHER_AREA}"
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, vol.url, people.new_card(vol.engine, dee.id))
        page.goto(listing)
        aqua = page.locator("li.opportunity", has_text="Aqua fit")
        assert aqua.count() == 1  # one entry for the series, its sessions within
        assert _lines(page, "li.opportunity:has-text('Aqua fit') li.session h3") == [
            "Monday 18 January at 18:00", "Monday 25 January at 18:00", "Monday 1 February at 18:00",
            "Monday 8 February at 18:00"]
        assert "4 sessions to choose from" in aqua.inner_text() and "1 credit a session" in aqua.inner_text()
        _shots(page, screenshot_dir, "volunteer-series")

        _press(page, "button", "Book Aqua fit on Monday 25 January at 18:00 for 1 credit")
        assert page.get_by_role("status").inner_text().strip().startswith("Booked: 1 credit is held for Aqua fit.")
        page.goto(listing)
        sessions = page.locator("li.opportunity:has-text('Aqua fit') li.session")
        assert [" ".join(t.split()) for t in sessions.locator("p").all_inner_texts()] == [
            "2 places left", "1 place left", "You have booked this.", "2 places left", "2 places left"]
        assert "Cancel my booking for Aqua fit on Monday 25 January at 18:00" in sessions.nth(1).inner_text()
        _shots(page, screenshot_dir, "volunteer-series-booked")
        with vol.engine.connect() as conn:
            booked = conn.execute(text("SELECT opportunity_id FROM entries WHERE volunteer_id = :v "
                                       "AND kind = 'opportunity_booked'"), {"v": swimmer}).scalars().all()
        assert booked == ["v-aqua-2"]
    finally:
        context.close()
