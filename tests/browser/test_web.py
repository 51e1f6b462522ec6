"""The web app in Debian's Chromium against the real stack (PostgreSQL, broker, worker, API): a volunteer signs in
with a card and makes a spend code, a partner's front desk signs in and takes the credits with it; every page is
checked with axe-core, at phone and desktop sizes, and used with the keyboard alone (docs/design.md §8)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.api_stack import Api, ready_api
from tests.e2e.conftest import _make_stack
from tests.e2e.stack import wait_until
from timecredits.mailbox import free_port, list_messages, running_mailbox
from web import people
from web.people import Person, PersonRole

ADMIN_TOKEN = "tc_web_admin_" + "9" * 32
AREA = "E09000030"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@dataclass
class WebStack:
    url: str
    api: Api
    engine: Any
    volunteer: Person
    other_volunteer: Person
    desk: Person
    admin: Person
    mailbox: Path


@pytest.fixture(scope="module")
def web(embedded_postgres: str, primary_template: str, kafka_bootstrap: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStack]:
    tmp = tmp_path_factory.mktemp("web")
    mailbox_dir, mail_port = tmp / "mailbox", free_port()
    mail_env = {"TIMECREDITS_SMTP_HOST": "127.0.0.1", "TIMECREDITS_SMTP_PORT": str(mail_port),
                "TIMECREDITS_SMTP_STARTTLS": "false", "TIMECREDITS_DEV_MAILBOX_DIR": str(mailbox_dir)}
    for stack in _make_stack(embedded_postgres, primary_template, kafka_bootstrap, tmp):
        stack.start_worker()
        with running_mailbox(mailbox_dir, mail_port), \
                ready_api({**stack.env(), **mail_env, "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN}, tmp / "api.log") as process:
            api = Api(process.url, ADMIN_TOKEN)
            api.organisation("web-garden", ["community"], AREA, auto_approve=True)
            api.organisation("web-lido", ["partner"], AREA)
            garden = api.token("org", org_id="web-garden")
            ids = [api.volunteer(name, AREA, member_of=("web-garden",)) for name in ("web-amina", "web-bo")]
            for volunteer_id, minutes in zip(ids, (300, 60)):
                logged = api.post("/v1/hours", garden, {"volunteer_id": volunteer_id, "org_id": "web-garden",
                                                        "date": "2026-11-30", "minutes": minutes,
                                                        "activity": "Gardening"})
                api.applied(api.accepted(logged), garden)
            amina = people.add_person(stack.engine, "Amina", PersonRole.VOLUNTEER, volunteer_id=ids[0])
            bo = people.add_person(stack.engine, "Bo", PersonRole.VOLUNTEER, volunteer_id=ids[1])
            desk = people.add_person(stack.engine, "Sam at the Lido", PersonRole.FRONT_DESK, org_id="web-lido",
                                     email="sam@lido.example")
            admin = people.add_person(stack.engine, "Ada Admin", PersonRole.ADMIN, email="ada@council.example")
            try:
                yield WebStack(process.url, api, stack.engine, amina, bo, desk, admin, mailbox_dir)
            finally:
                api.close()


def _axe(page: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def _shots(page: Any, directory: Path, name: str) -> None:
    for size_name, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        _axe(page)
        page.screenshot(path=str(directory / f"web-{name}-{size_name}.png"), full_page=True)
    page.set_viewport_size(PHONE)


def _context(browser: Any) -> Any:
    # axe-core is injected as a script; the app's Content-Security-Policy (checked over HTTP below) would refuse it.
    return browser.new_context(viewport=PHONE, bypass_csp=True)


def _sign_in_with_card(page: Any, url: str, code: str) -> None:
    """With the keyboard alone: Tab to the card's field, type, Enter."""
    page.goto(url + "/app/sign-in")
    page.locator("#code").focus()
    page.keyboard.type(code)
    page.keyboard.press("Enter")
    page.wait_for_url(url + "/app")


def test_a_volunteer_makes_a_spend_code_and_the_front_desk_takes_it(web: WebStack, browser: Any,
                                                                   screenshot_dir: Path) -> None:
    volunteer_card = people.new_card(web.engine, web.volunteer.id)
    desk_card = people.new_card(web.engine, web.desk.id)
    mine, theirs = _context(browser), _context(browser)
    try:
        phone = mine.new_page()
        phone.goto(web.url + "/app")
        assert phone.url == web.url + "/app/sign-in"  # not signed in: sent to sign in
        _shots(phone, screenshot_dir, "sign-in")
        _sign_in_with_card(phone, web.url, volunteer_card[:4] + " " + volunteer_card[4:].lower())
        assert phone.locator(".panel").inner_text().strip() == "You have 5 credits to spend."
        _shots(phone, screenshot_dir, "volunteer-home")

        phone.get_by_role("link", name="Pay at a counter with a spend code").focus()
        phone.keyboard.press("Enter")
        phone.wait_for_url(web.url + "/app/pay")
        phone.locator("button[type=submit]", has_text="Make a spend code").click()  # nothing chosen yet
        assert phone.locator(".error-summary").is_visible()
        assert "Choose where you are paying" in phone.locator(".error-summary").inner_text()
        _shots(phone, screenshot_dir, "volunteer-pay-errors")
        phone.locator("#partner_id").select_option("web-lido")
        phone.locator("#amount").fill("2")
        phone.locator("#amount").press("Enter")
        phone.wait_for_load_state()
        shown_code = phone.locator(".code").inner_text().strip()
        assert re.fullmatch(r"[0-9]{4} [0-9]{4}", shown_code), shown_code
        assert phone.locator(".qr svg").count() == 1
        assert "Up to 2 credits" in phone.locator(".panel").inner_text()
        _shots(phone, screenshot_dir, "volunteer-spend-code")

        desk = theirs.new_page()
        _sign_in_with_card(desk, web.url, desk_card)
        desk.get_by_role("link", name="Take credits with a spend code").click()
        desk.wait_for_url(web.url + "/app/take")
        _shots(desk, screenshot_dir, "desk-take")
        desk.locator("#code").fill(shown_code)
        desk.locator("#amount").fill("2")
        desk.keyboard.press("Enter")
        desk.wait_for_url(web.url + "/app/take")
        with desk.expect_navigation():  # after seeing the amount
            desk.get_by_role("button", name="Take 2 credits").press("Enter")
        assert desk.get_by_role("status").inner_text().strip() == "Done: 2 credits taken."
        _shots(desk, screenshot_dir, "desk-taken")

        desk.locator("#code").fill(shown_code)  # the same code again takes nothing
        desk.locator("#amount").fill("1")
        desk.keyboard.press("Enter")
        desk.wait_for_load_state()
        assert "used already" in desk.locator(".error-summary").inner_text()
        _shots(desk, screenshot_dir, "desk-code-used")

        phone.goto(web.url + "/app")
        assert phone.locator(".panel").inner_text().strip() == "You have 3 credits to spend."
        with web.engine.connect() as conn:  # what staff do is recorded against them (docs/design.md §8.2)
            by_desk = conn.execute(text("SELECT count(*) FROM event_requests WHERE type = 'CreditsRedeemed' "
                                        "AND person_id = :p AND actor = 'org:web-lido'"), {"p": web.desk.id}).scalar()
        assert by_desk == 1
    finally:
        mine.close()
        theirs.close()


def _signed_in_client(web: WebStack, person: Person) -> tuple[httpx.Client, str]:
    """A client with a session cookie for `person`, and the session's CSRF token, without a browser."""
    cookie, session = people.start_session(web.engine, person)
    client = httpx.Client(base_url=web.url, cookies={"tc_session": cookie}, follow_redirects=False, timeout=30)
    return client, session.csrf_token


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(web: WebStack) -> None:
    client, csrf = _signed_in_client(web, web.other_volunteer)
    with client:
        for token in ("", "not-the-token"):
            refused = client.post("/app/pay", data={"csrf_token": token, "partner_id": "web-lido", "amount": "1"})
            assert refused.status_code == 403 and "This form has expired" in refused.text
        with web.engine.connect() as conn:
            made = conn.execute(text("SELECT count(*) FROM spend_codes WHERE volunteer_id = :v"),
                                {"v": web.other_volunteer.volunteer_id}).scalar_one()
        assert made == 0
        made_now = client.post("/app/pay", data={"csrf_token": csrf, "partner_id": "web-lido", "amount": "1"})
        assert made_now.status_code == 200 and "Your spend code" in made_now.text
        signed_out = client.post("/app/sign-out", data={})
        assert signed_out.status_code == 403  # signing out is a form too
    pre = httpx.post(web.url + "/app/sign-in/card", data={"code": "ABCDEFGHJK"}, timeout=30)
    assert pre.status_code == 403 and "This form has expired" in pre.text


def test_a_session_idle_too_long_or_signed_out_everywhere_is_refused(web: WebStack) -> None:
    idle, _ = _signed_in_client(web, web.other_volunteer)
    with idle:
        assert idle.get("/app").status_code == 200
        with web.engine.begin() as conn:  # a week and a day without a request
            conn.execute(text("UPDATE web_sessions SET last_seen_at = now() - interval '8 days' "
                              "WHERE id_sha256 = :d"), {"d": people.digest(idle.cookies["tc_session"])})
        assert idle.get("/app").headers["location"] == "/app/sign-in"
    ended, _ = _signed_in_client(web, web.other_volunteer)
    with ended:
        with web.engine.begin() as conn:  # past its absolute end, however recently it was used
            conn.execute(text("UPDATE web_sessions SET expires_at = now() - interval '1 second' "
                              "WHERE id_sha256 = :d"), {"d": people.digest(ended.cookies["tc_session"])})
        assert ended.get("/app").headers["location"] == "/app/sign-in"
    first, csrf = _signed_in_client(web, web.other_volunteer)
    second, _ = _signed_in_client(web, web.other_volunteer)
    with first, second:
        assert second.get("/app").status_code == 200
        everywhere = first.post("/app/sign-out-everywhere", data={"csrf_token": csrf})
        assert everywhere.status_code == 200 and "signed out everywhere" in everywhere.text
        for client in (first, second):
            assert client.get("/app").headers["location"] == "/app/sign-in"


def test_each_person_sees_their_own_and_only_their_own_pages(web: WebStack) -> None:
    volunteer, _ = _signed_in_client(web, web.other_volunteer)
    desk, _ = _signed_in_client(web, web.desk)
    with volunteer, desk:
        home = volunteer.get("/app")
        assert "You have 1 credit to spend." in home.text and "Amina" not in home.text
        assert volunteer.get("/app/take").status_code == 403
        assert desk.get("/app/pay").status_code == 403
        assert "Take credits" in desk.get("/app").text
        page = volunteer.get("/app/pay")
        for name, value in (("content-security-policy", "default-src 'self'"), ("x-content-type-options", "nosniff"),
                            ("cache-control", "no-store")):
            assert value in page.headers[name], page.headers


def test_a_card_signs_in_once_and_a_new_card_voids_the_old(web: WebStack) -> None:
    old = people.new_card(web.engine, web.other_volunteer.id)
    new = people.new_card(web.engine, web.other_volunteer.id)
    assert people.use_card(web.engine, old) is None
    assert people.use_card(web.engine, new) == web.other_volunteer
    assert people.use_card(web.engine, new) is None


def test_the_session_cookie_is_httponly_and_samesite(web: WebStack) -> None:
    code = people.new_card(web.engine, web.other_volunteer.id)
    with httpx.Client(base_url=web.url, timeout=30) as client:
        form = client.get("/app/sign-in")
        pre = re.search(r'name="pre_token" value="([^"]+)"', form.text)
        assert pre is not None and client.cookies.get("tc_pre") == pre[1]
        signed = client.post("/app/sign-in/card", data={"pre_token": pre[1], "code": code})
        assert signed.status_code == 303 and signed.headers["location"] == "/app"
        cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("tc_session="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # plain http here
        assert client.get("/app").status_code == 200


def _link_in_mail(web: WebStack, to: str) -> str:
    messages = [m for m in list_messages(web.mailbox) if to in m.to]
    assert messages, f"no mail to {to} in {web.mailbox}"
    found = re.search(r"(http://\S+/app/sign-in/link/\S+)", messages[0].text or "")
    assert found is not None, messages[0].text
    return found[1]


def test_staff_sign_in_with_a_link_read_from_the_real_smtp_server(web: WebStack, browser: Any,
                                                                  screenshot_dir: Path) -> None:
    context = _context(browser)
    try:
        page = context.new_page()
        page.goto(web.url + "/app/sign-in")
        page.locator("#email").focus()
        page.keyboard.type("  ADA@council.example ")
        page.keyboard.press("Enter")
        page.wait_for_url(web.url + "/app/sign-in/email")
        assert page.locator("h1").inner_text() == "Check your e-mail"
        _shots(page, screenshot_dir, "check-your-email")
        link = _link_in_mail(web, "ada@council.example")
        page.goto(link)
        assert page.locator("h1").inner_text() == "Sign in as Ada Admin"
        _shots(page, screenshot_dir, "confirm-link")
        page.get_by_role("button", name="Sign in").press("Enter")
        page.wait_for_url(web.url + "/app")
        page.get_by_role("link", name="The development mailbox").click()
        page.wait_for_url(web.url + "/app/mailbox")
        assert "Your link to sign in to timecredits" in page.locator("table").inner_text()
        _shots(page, screenshot_dir, "admin-mailbox")
        page.get_by_role("link", name="Your link to sign in to timecredits").first.click()
        assert "It works once" in page.locator("pre.mail").inner_text()
        _shots(page, screenshot_dir, "admin-mail")
        page.goto(link)  # used: it signs nobody in again
        assert page.locator("h1").inner_text() == "This sign-in link has expired"
    finally:
        context.close()


def test_an_unknown_address_gets_the_same_answer_and_no_mail(web: WebStack) -> None:
    before = len(list_messages(web.mailbox))
    with httpx.Client(base_url=web.url, timeout=30) as client:
        form = client.get("/app/sign-in")
        pre = re.search(r'name="pre_token" value="([^"]+)"', form.text)
        assert pre is not None
        answer = client.post("/app/sign-in/email", data={"pre_token": pre[1], "email": "nobody@nowhere.example"})
        assert answer.status_code == 200 and "Check your e-mail" in answer.text
        invalid = client.post("/app/sign-in/email", data={"pre_token": pre[1], "email": "not an address"})
        assert invalid.status_code == 422 and "There is a problem" in invalid.text
    assert len(list_messages(web.mailbox)) == before


def test_the_mailbox_is_for_admins_only(web: WebStack) -> None:
    for person in (web.desk, web.other_volunteer):
        client, _ = _signed_in_client(web, person)
        with client:
            assert client.get("/app/mailbox").status_code == 403
    admin, _ = _signed_in_client(web, web.admin)
    with admin:
        assert admin.get("/app/mailbox").status_code == 200
        assert admin.get("/app/mailbox/..%2Fetc").status_code == 404


def test_a_session_reads_through_the_api_as_its_person_and_never_writes(web: WebStack) -> None:
    lead = people.add_person(web.engine, "Lee Lead", PersonRole.LEAD, email=f"lead-{web.admin.id.hex[:6]}@x.example")
    client, _ = _signed_in_client(web, lead)
    with client:
        assert client.get("/v1/stats/participation").status_code == 200  # the lead's dashboard, signed in
        assert client.get(f"/v1/volunteers/{web.volunteer.volunteer_id}/balance").status_code == 403
        write = client.post("/v1/gifts", json={"to_volunteer_id": web.volunteer.volunteer_id, "amount": "1"})
        assert write.status_code == 401  # a cookie never writes through the API
    mine, _ = _signed_in_client(web, web.other_volunteer)
    with mine:
        assert mine.get(f"/v1/volunteers/{web.other_volunteer.volunteer_id}/balance").json()["available"] == "1.00"
        assert mine.get(f"/v1/volunteers/{web.volunteer.volunteer_id}/balance").status_code == 403
        assert mine.post("/v1/gifts", json={"to_volunteer_id": web.volunteer.volunteer_id,
                                            "amount": "1"}).status_code == 401


def test_an_admin_registers_an_organisation_invites_its_desk_and_manages_tokens(web: WebStack, browser: Any,
                                                                               screenshot_dir: Path) -> None:
    card = people.new_card(web.engine, web.admin.id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, web.url, card)
        page.get_by_role("link", name="Organisations").click()
        page.wait_for_url(web.url + "/app/organisations")
        page.locator("#name").fill("Web Pool")
        page.get_by_role("button", name="Register the organisation").click()  # no id, area or kind yet
        assert page.locator(".error-summary").is_visible()
        _shots(page, screenshot_dir, "admin-organisation-errors")
        page.locator("#id").fill("web-pool")
        page.locator("#area").fill(AREA)
        page.locator("#kinds-partner").check()
        page.locator("#area").press("Enter")
        assert page.get_by_role("status").inner_text() == "Web Pool is registered."
        assert "web-pool" in page.locator("table").inner_text()
        _shots(page, screenshot_dir, "admin-organisations")

        page.goto(web.url + "/app/people")
        page.locator("#display_name").fill("Pat at the Pool")
        page.locator("#email").fill("pat@pool.example")
        page.locator("#role").select_option("front_desk")
        page.locator("#org_id").select_option("web-garden")  # not a partner: refused
        page.get_by_role("button", name="Invite them").click()
        assert "Choose a partner organisation" in page.locator(".error-summary").inner_text()
        page.locator("#org_id").select_option("web-pool")
        page.get_by_role("button", name="Invite them").click()
        assert "Pat at the Pool can sign in now" in page.get_by_role("status").inner_text()
        _shots(page, screenshot_dir, "admin-people")
        with web.engine.connect() as conn:
            pat = people.person_by_email(conn, "pat@pool.example")
        assert pat is not None and (pat.role, pat.org_id) == (PersonRole.FRONT_DESK, "web-pool")

        page.goto(web.url + "/app/tokens")
        page.locator("#role").select_option("org")
        page.locator("#org_id").select_option("web-pool")
        page.locator("#label").fill("pool till")
        page.get_by_role("button", name="Create the token").click()
        token = page.locator(".token").inner_text().strip()
        assert re.fullmatch(r"tc_[A-Za-z0-9_-]{43}", token)
        _shots(page, screenshot_dir, "admin-tokens")
        assert httpx.get(web.url + "/v1/tokens", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        page.get_by_role("button", name="Revoke the token pool till").click()
        page.wait_for_url(web.url + "/app/tokens")
        assert page.locator(".token").count() == 0  # shown once only
        wait_until(lambda: httpx.get(web.url + "/v1/tokens", headers={"Authorization": f"Bearer {token}"})
                   .status_code == 401, 10, "the revoked token to be refused")  # each API caches a token ≤ 1 s
        page.goto(web.url + "/app/people")
        page.get_by_role("button", name="Disable Pat at the Pool").click()
        assert "can no longer sign in" in page.get_by_role("status").inner_text()
    finally:
        context.close()


@pytest.mark.parametrize("path", ["/app/organisations", "/app/people", "/app/tokens", "/app/mailbox"])
def test_admin_pages_are_for_admins_only(web: WebStack, path: str) -> None:
    for person in (web.desk, web.other_volunteer):
        client, csrf = _signed_in_client(web, person)
        with client:
            assert client.get(path).status_code == 403
            assert client.post(path, data={"csrf_token": csrf}).status_code in (403, 405)
    with httpx.Client(base_url=web.url, follow_redirects=False, timeout=30) as anonymous:
        assert anonymous.get(path).headers["location"] == "/app/sign-in"


def test_a_lead_signed_in_to_the_app_opens_the_dashboard_without_a_token(web: WebStack, browser: Any,
                                                                         screenshot_dir: Path) -> None:
    lead = people.add_person(web.engine, "Lou Lead", PersonRole.LEAD, email="lou@council.example")
    card = people.new_card(web.engine, lead.id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, web.url, card)
        page.get_by_role("link", name="The programme dashboard").click()
        page.wait_for_url(web.url + "/")
        page.locator('#main[data-state="ready"]').wait_for(state="visible", timeout=60_000)
        assert page.locator("#signin").is_hidden()  # no token pasted
        page.screenshot(path=str(screenshot_dir / "web-lead-dashboard.png"), full_page=True)
    finally:
        context.close()
    volunteer_card = people.new_card(web.engine, web.other_volunteer.id)
    context = _context(browser)
    try:  # a volunteer's session may not read the statistics: the dashboard asks for a lead's token instead
        page = context.new_page()
        _sign_in_with_card(page, web.url, volunteer_card)
        page.goto(web.url + "/")
        page.locator("#signin-error").wait_for(state="visible")  # once the statistics refused the session
        assert "needs the lead or admin role" in page.locator("#signin-error").inner_text()
        assert page.locator("#main").is_hidden()
    finally:
        context.close()


def test_a_lead_reads_the_committee_report_a_click_away(web: WebStack, browser: Any, screenshot_dir: Path) -> None:
    lead = people.add_person(web.engine, "Rae Lead", PersonRole.LEAD, email="rae@council.example")
    card = people.new_card(web.engine, lead.id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, web.url, card)
        page.get_by_role("link", name="The committee report").click()
        page.wait_for_url(web.url + "/app/report")
        _shots(page, screenshot_dir, "lead-report-choice")
        page.locator("#period").focus()
        page.keyboard.press("Tab")  # to the button
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/app/report\?period=.*"))
        assert "Time Credits programme" in page.content()
    finally:
        context.close()
    client, _ = _signed_in_client(web, lead)
    with client:
        report = client.get("/app/report", params={"period": "2026-Q3"})
        assert report.status_code == 200 and report.headers["content-security-policy"].startswith("default-src 'none'")
        assert "<script" not in report.text
        assert client.get("/app/report", params={"period": "someday"}).status_code == 422
    volunteer, _ = _signed_in_client(web, web.other_volunteer)
    with volunteer:
        assert volunteer.get("/app/report", params={"period": "2026-Q3"}).status_code == 403


def test_a_volunteer_gives_credits_by_card_number(web: WebStack, browser: Any, screenshot_dir: Path) -> None:
    card = people.new_card(web.engine, web.volunteer.id)
    context = _context(browser)
    try:
        page = context.new_page()
        _sign_in_with_card(page, web.url, card)
        assert web.other_volunteer.volunteer_id is not None
        page.get_by_role("link", name="Give credits to another volunteer").click()
        page.wait_for_url(web.url + "/app/gift")
        page.locator("#card").fill(str(web.volunteer.volunteer_id))  # their own
        page.locator("#amount").fill("1")
        page.keyboard.press("Enter")
        assert "That is your own card number" in page.locator(".error-summary").inner_text()
        _shots(page, screenshot_dir, "volunteer-gift-errors")
        page.locator("#card").fill(web.other_volunteer.volunteer_id.upper().replace("-", "- "))  # as typed
        page.locator("#amount").fill("1")
        page.keyboard.press("Enter")
        assert page.get_by_role("status").inner_text() == "Given: 1 credit."
        _shots(page, screenshot_dir, "volunteer-gift")
    finally:
        context.close()
    client, csrf = _signed_in_client(web, web.volunteer)
    with client:
        nobody = client.post("/app/gift", data={"csrf_token": csrf, "card": "v-000000000000", "amount": "1"})
        assert nobody.status_code == 422 and "no volunteer with that card number" in nobody.text
        assert client.post("/app/gift", data={"card": web.other_volunteer.volunteer_id, "amount": "1"}).status_code == 403
    desk, csrf = _signed_in_client(web, web.desk)
    with desk:
        assert desk.post("/app/gift", data={"csrf_token": csrf, "card": web.volunteer.volunteer_id,
                                            "amount": "1"}).status_code == 403


def test_guessing_card_codes_is_refused_after_a_few_wrong_ones(web: WebStack) -> None:
    """The last test of the module: afterwards this address may not sign in with a card for a while."""
    right = people.new_card(web.engine, web.other_volunteer.id)
    with httpx.Client(base_url=web.url, timeout=30, follow_redirects=False) as client:
        pre = re.search(r'name="pre_token" value="([^"]+)"', client.get("/app/sign-in").text)
        assert pre is not None
        wrong = [f"WRONG{n:05d}" for n in range(people.CARD_FAILURES_AN_ADDRESS)]
        answers = [client.post("/app/sign-in/card", data={"pre_token": pre[1], "code": code}) for code in wrong]
        assert {a.status_code for a in answers} <= {422, 429}
        limited = client.post("/app/sign-in/card", data={"pre_token": pre[1], "code": right})
        assert limited.status_code == 429 and "Too many wrong codes" in limited.text
    assert people.use_card(web.engine, right) == web.other_volunteer  # the card itself still works elsewhere
