"""The web app's pages (docs/design.md §8): sign-in by e-mail link or card, sessions, and the doors of each role.

Pages act through the same `Principal` and service functions as the API (§8.2); a refusal becomes words
(`web.words`), never a code. Every POST carries a CSRF token (the session's, or before sign-in a pre-session
cookie's), checked before anything else the route does.
"""
from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import SESSION_COOKIE, Services
from api.errors import ApiError
from api.models import hundredths
from api.services import spending
from api.services.outcomes import wait_outcome as _wait_outcome
from api.spend_codes import make_code, qr_svg
from ledger.pg import schema
from ledger.pg.repository import LedgerRepository
from ledger.spend_codes import DEFAULT_VALID_MINUTES, read_code, shown
from web import people
from timecredits.mail import MailNotSent
from timecredits.mailbox import list_messages, read_message
from web.mail import send_sign_in_link
from web.people import Person, PersonRole, Session, TooManyRequests
from web.words import credits, refusal

PREFIX = "/app"
PRE_COOKIE = "tc_pre"
LONDON = ZoneInfo("Europe/London")
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")  # autoescapes .html
router = APIRouter(prefix=PREFIX, include_in_schema=False)

HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """The web app's headers on every answer under /app (docs/design.md §8.1)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in HEADERS if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, with_headers)


class SignInNeeded(Exception):
    """No live session: the page sends the person to sign in."""


class NotYourPage(Exception):
    def __init__(self, who: str) -> None:
        super().__init__(who)
        self.who = who


def install(app: FastAPI) -> None:
    from web import admin, coordinator, corrections, erasure, lead, partner, privacy, uploads, volunteer  # §8.3's doors

    app.include_router(router)
    app.include_router(admin.router)
    app.include_router(volunteer.router)
    app.include_router(coordinator.router)
    app.include_router(partner.router)
    app.include_router(lead.router)
    app.include_router(uploads.router)
    app.include_router(privacy.router)
    app.include_router(corrections.router)
    app.include_router(erasure.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=Path(__file__).parent / "static"), name="web-static")
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(SignInNeeded)
    async def _sign_in(_: Request, __: SignInNeeded) -> Response:
        return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)

    @app.exception_handler(FormExpired)
    async def _expired(request: Request, _: FormExpired) -> Response:
        return _refused_form(request)

    @app.exception_handler(NotYourPage)
    async def _not_yours(request: Request, exc: NotYourPage) -> Response:
        return _message(request, "You cannot use this page", [f"This page is for {exc.who}."], status_code=403,
                        session=_session(request), link=(PREFIX, "Go to your home page"))


# --- plumbing --------------------------------------------------------------------------------------------------


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _session(request: Request) -> Session | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    return people.resume_session(_services(request).engine, cookie) if cookie else None


def signed_in(request: Request) -> Session:
    session = _session(request)
    if session is None:
        raise SignInNeeded
    return session


SignedIn = Annotated[Session, Depends(signed_in)]
CsrfToken = Annotated[str, Form()]


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("errors", {})
    context.setdefault("session", None)
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def _message(request: Request, title: str, paragraphs: list[str], status_code: int = 200,
             session: Session | None = None, link: tuple[str, str] | None = None) -> HTMLResponse:
    return _page(request, "message.html", status_code, title=title, paragraphs=paragraphs, session=session, link=link)


class FormExpired(Exception):
    """A POST without the CSRF token of the session (or of the sign-in page) that made its form."""


def _check_csrf(session: Session, token: str) -> None:
    if not hmac.compare_digest(session.csrf_token.encode(), token.encode()):
        raise FormExpired


def _only(session: Session, *roles: PersonRole, who: str) -> Person:
    if session.person.role not in roles:
        raise NotYourPage(who)
    return session.person


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def _signed_in_response(request: Request, person: Person) -> Response:
    cookie, _ = people.start_session(_services(request).engine, person)
    response = RedirectResponse(PREFIX, status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="lax", secure=_secure(request), path="/")
    response.delete_cookie(PRE_COOKIE, path=PREFIX)
    return response


def _pre_token(request: Request) -> str:
    """The pre-session CSRF token of the sign-in forms: the cookie's, or a new one (set by `_with_pre`)."""
    return request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)


def _with_pre(request: Request, response: HTMLResponse, token: str) -> HTMLResponse:
    response.set_cookie(PRE_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path=PREFIX,
                        max_age=3600)
    return response


def _pre_ok(request: Request, token: str) -> bool:
    cookie = request.cookies.get(PRE_COOKIE)
    return bool(cookie) and hmac.compare_digest(cookie.encode(), token.encode())  # type: ignore[union-attr]


def _refused_form(request: Request) -> HTMLResponse:
    return _message(request, "This form has expired", ["Nothing was done. Go back, reload the page and try again."],
                    status_code=403, link=(f"{PREFIX}/sign-in", "Sign in"))


# --- signing in and out ---------------------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, card: str = "") -> HTMLResponse:
    """`?card=` is what a sign-in card's QR code opens: the card's field is filled in, one button to press."""
    token = _pre_token(request)
    return _with_pre(request, _page(request, "sign_in.html", title="Sign in", pre_token=token,
                                    card=people.read_card_code(card)[:people.CARD_LENGTH]), token)


@router.post("/sign-in/email", response_class=HTMLResponse)
def ask_for_link(request: Request, pre_token: Annotated[str, Form()] = "",
                 email: Annotated[str, Form()] = "") -> HTMLResponse:
    if not _pre_ok(request, pre_token):
        return _refused_form(request)
    email = email.strip()
    if "@" not in email or len(email) > 254 or " " in email:
        return _with_pre(request, _page(request, "sign_in.html", 422, title="Sign in", pre_token=pre_token,
                                        email=email, errors={"email": "Enter an e-mail address, like name@example.com"}),
                         pre_token)
    services = _services(request)
    try:
        found = people.request_link(services.engine, email, _address(request))
    except TooManyRequests as limited:
        minutes = max(1, round(limited.retry_after.total_seconds() / 60))
        return _message(request, "Too many sign-in links", [f"Try again in {minutes} minutes."], status_code=429)
    if found is not None:
        person, token = found
        if services.mailer is None or person.email is None:
            return _message(request, "E-mail sign-in is not set up here", [
                "Ask your organisation for a sign-in card."], status_code=503)
        try:
            send_sign_in_link(services.mailer, person.email, person.display_name,
                              people.link_url(str(request.base_url), token))
        except MailNotSent:
            logging.getLogger("web").warning("a sign-in link could not be sent", exc_info=True)
            return _message(request, "We could not send the e-mail", [
                "Nothing was sent. Please try again in a few minutes."], status_code=503)
    return _message(request, "Check your e-mail", [
        f"If {email} may sign in here, we have sent it a link. The link works once, for 15 minutes.",
        "Nothing arrived? Check the address, look in your spam folder, or ask your organisation for a sign-in card."])


@router.get("/sign-in/link/{token}", response_class=HTMLResponse)
def confirm_link(request: Request, token: str) -> HTMLResponse:
    """A page with a button, not a sign-in on GET: mail scanners that open links must not use them up."""
    person = people.link_person(_services(request).engine, token)
    if person is None:
        return _message(request, "This sign-in link has expired", [
            "A link works once, for 15 minutes. Ask for a new one."], status_code=410,
            link=(f"{PREFIX}/sign-in", "Get a new sign-in link"))
    pre = _pre_token(request)
    return _with_pre(request, _page(request, "confirm_link.html", title="Sign in", person=person, token=token,
                                    pre_token=pre), pre)


@router.post("/sign-in/link/{token}")
def use_link(request: Request, token: str, pre_token: Annotated[str, Form()] = "") -> Response:
    if not _pre_ok(request, pre_token):
        return _refused_form(request)
    person = people.use_link(_services(request).engine, token)
    if person is None:
        return _message(request, "This sign-in link has expired", [
            "A link works once, for 15 minutes. Ask for a new one."], status_code=410,
            link=(f"{PREFIX}/sign-in", "Get a new sign-in link"))
    return _signed_in_response(request, person)


@router.post("/sign-in/card")
def use_card(request: Request, pre_token: Annotated[str, Form()] = "", code: Annotated[str, Form()] = "") -> Response:
    if not _pre_ok(request, pre_token):
        return _refused_form(request)
    try:
        person = people.use_card(_services(request).engine, code, _address(request)) if code.strip() else None
    except TooManyRequests as limited:
        minutes = max(1, round(limited.retry_after.total_seconds() / 60))
        return _message(request, "Too many wrong codes", [f"Try again in {minutes} minutes, or ask your "
                                                          "organisation for a new card."], status_code=429)
    if person is None:
        message = ("Enter the code on your sign-in card" if not code.strip() else
                   "That code does not sign anyone in: check it, or ask your organisation for a new card")
        return _with_pre(request, _page(request, "sign_in.html", 422, title="Sign in", pre_token=pre_token,
                                        errors={"code": message}), pre_token)
    return _signed_in_response(request, person)


@router.post("/sign-out")
def sign_out(request: Request, session: SignedIn, csrf_token: CsrfToken = "") -> Response:
    _check_csrf(session, csrf_token)
    people.end_session(_services(request).engine, request.cookies[SESSION_COOKIE])
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/sign-out-everywhere")
def sign_out_everywhere(request: Request, session: SignedIn, csrf_token: CsrfToken = "") -> Response:
    _check_csrf(session, csrf_token)
    people.end_every_session(_services(request).engine, session.person.id)
    response = _message(request, "You are signed out everywhere", [
        "Every device where you were signed in will ask you to sign in again."],
        link=(f"{PREFIX}/sign-in", "Sign in"))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- home pages -----------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def home(request: Request, session: SignedIn) -> HTMLResponse:
    person = session.person
    if person.role is PersonRole.VOLUNTEER:
        assert person.volunteer_id is not None
        balance = LedgerRepository(_services(request).engine).volunteer_balance(person.volunteer_id)
        words = f"You have {credits(balance.available)} to spend."
        if balance.held:
            words += f" {credits(balance.held)} {'is' if balance.held == 100 else 'are'} held for your bookings."
        from web.volunteer import held_sentences  # here, not at the top: web.volunteer imports this module

        from web.volunteer import offer_sentences

        return _page(request, "volunteer/home.html", title=f"Hello, {person.display_name}", session=session,
                     balance_words=words, held=held_sentences(_services(request), person.volunteer_id),
                     offers=offer_sentences(_services(request), person.volunteer_id))
    actions = {
        PersonRole.FRONT_DESK: [(f"{PREFIX}/take", "Take credits with a spend code"),
                                (f"{PREFIX}/listings", "Your opportunities"),
                                (f"{PREFIX}/open-bookings", "Open bookings")],
        PersonRole.LEAD: [("/", "The programme dashboard"), (f"{PREFIX}/report", "The committee report")],
        PersonRole.ADMIN: [(f"{PREFIX}/organisations", "Organisations"), (f"{PREFIX}/people", "People who sign in"),
                           (f"{PREFIX}/tokens", "API tokens"), (f"{PREFIX}/corrections", "Correct an entry"),
                           (f"{PREFIX}/audit", "The audit log"), (f"{PREFIX}/mailbox", "The development mailbox")],
        PersonRole.COORDINATOR: [(f"{PREFIX}/members", "Members: register, print a card, log hours"),
                                  (f"{PREFIX}/hours/group", "Log hours for a group"),
                                  (f"{PREFIX}/import", "Import the monthly spreadsheet"),
                                  (f"{PREFIX}/approvals", "Hours waiting for approval"),
                                  (f"{PREFIX}/corrections", "Correct an approval")],
    }[person.role]
    return _page(request, "home_staff.html", title=f"Hello, {person.display_name}", session=session, actions=actions)


# --- the volunteer: a spend code for the counter (docs/design.md §5.6) ------------------------------------------


def _partners(services: Services) -> list[tuple[str, str]]:
    o = schema.organisations
    with services.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(  # type: ignore[misc]
            select(o.c.id, o.c.name).where(o.c.kinds.any("partner")).order_by(o.c.name))]


def _pay_form(request: Request, session: Session, status_code: int = 200, **context: Any) -> HTMLResponse:
    services = _services(request)
    assert session.person.volunteer_id is not None
    available = LedgerRepository(services.engine).volunteer_balance(session.person.volunteer_id).available
    return _page(request, "volunteer/pay.html", status_code, title="Pay at a counter", session=session,
                 partners=_partners(services), minutes=DEFAULT_VALID_MINUTES, available=credits(available), **context)


@router.get("/pay", response_class=HTMLResponse)
def pay_page(request: Request, session: SignedIn) -> HTMLResponse:
    _only(session, PersonRole.VOLUNTEER, who="volunteers")
    return _pay_form(request, session)


@router.post("/pay", response_class=HTMLResponse)
def make_spend_code(request: Request, session: SignedIn, csrf_token: CsrfToken = "",
                    partner_id: Annotated[str, Form()] = "", amount: Annotated[str, Form()] = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    person = _only(session, PersonRole.VOLUNTEER, who="volunteers")
    errors: dict[str, str] = {}
    if not partner_id:
        errors["partner_id"] = "Choose where you are paying"
    max_amount = _credits_typed(amount)
    if max_amount is None:
        errors["amount"] = "Enter an amount of credits, like 2 or 1.50"
    if errors:
        return _pay_form(request, session, 422, errors=errors, partner_id=partner_id, amount=amount)
    services = _services(request)
    assert person.volunteer_id is not None and max_amount is not None
    try:
        code, digits = make_code(services, person.principal(), person.volunteer_id, partner_id, max_amount,
                                 DEFAULT_VALID_MINUTES)
    except ApiError as refused:
        field = "amount" if refused.code == "invalid_amount" else "partner_id"
        return _pay_form(request, session, 422, errors={field: refusal(refused.code).capitalize()},
                         partner_id=partner_id, amount=amount)
    name = dict(_partners(services)).get(partner_id, partner_id)
    expires = code.expires_at.astimezone(LONDON).strftime("%H:%M")
    return _page(request, "volunteer/code.html", title="Your spend code", session=session, partner_name=name,
                 code_shown=shown(digits), code_spoken=" ".join(digits), max_words=credits(code.max_amount),
                 expires_words=expires, qr_svg=qr_svg(digits))


def _credits_typed(text: str) -> int | None:
    """An amount a person typed ("2", "1.50"), in hundredths, or None if it is not one above zero."""
    try:
        value = hundredths(text.strip())
    except (ValueError, ApiError):
        return None
    return value if value > 0 else None


# --- the front desk: take credits with a spend code ---------------------------------------------------------


@router.get("/take", response_class=HTMLResponse)
def take_page(request: Request, session: SignedIn) -> HTMLResponse:
    _only(session, PersonRole.FRONT_DESK, who="a partner's front desk")
    return _page(request, "desk/take.html", title="Take credits", session=session)


_CODE_ERRORS = {"invalid_code", "code_expired", "code_used", "authorisation_required", "rate_limited"}


@router.post("/take", response_class=HTMLResponse)
def take_credits(request: Request, session: SignedIn, csrf_token: CsrfToken = "",
                 code: Annotated[str, Form()] = "", amount: Annotated[str, Form()] = "",
                 confirmed: Annotated[str, Form()] = "") -> HTMLResponse:
    """Two steps: the amount and the code (typed, or typed by a hand-held scanner with its Enter), checked and
    shown back as "Take 2 credits?"; then, with `confirmed`, the payment (docs/design.md §8.3)."""
    _check_csrf(session, csrf_token)
    person = _only(session, PersonRole.FRONT_DESK, who="a partner's front desk")
    errors: dict[str, str] = {}
    value = _credits_typed(amount)
    if value is None:
        errors["amount"] = "Enter the credits to take, like 2 or 1.50"
    if not code.strip():
        errors["code"] = "Enter the volunteer's spend code"
    if errors:
        return _page(request, "desk/take.html", 422, title="Take credits", session=session, errors=errors,
                     code=code, amount=amount)
    services = _services(request)
    assert person.org_id is not None and value is not None
    try:
        if confirmed != "yes":
            spending.check_redeem(services, person.principal(), person.org_id, value, code)
            return _page(request, "desk/take_confirm.html", title=f"Take {credits(value)}?", session=session,
                         code=code, amount=amount, code_shown=shown(read_code(code) or code), words=credits(value))
        event_id = spending.redeem(services, person.principal(), person.org_id, value, spend_code=code)
    except ApiError as refused:
        field = "code" if refused.code in _CODE_ERRORS else "amount"
        status = 429 if refused.code == "rate_limited" else 422
        return _page(request, "desk/take.html", status, title="Take credits", session=session,
                     errors={field: refusal(refused.code).capitalize()}, code=code, amount=amount)
    status, reason = _wait_outcome(services, event_id)
    if status == "applied":
        outcome, refused_ = f"Done: {credits(value)} taken.", False
    elif status == "rejected":
        outcome, refused_ = f"Not taken: {refusal(reason or '')}.", True
    else:
        outcome, refused_ = "Sent: it will show on the volunteer's statement in a moment.", False
    return _page(request, "desk/take.html", title="Take credits", session=session, outcome=outcome,
                 refused=refused_)


# --- the admin: the development mailbox (docs/design.md §8.4) ---------------------------------------------------


@router.get("/mailbox", response_class=HTMLResponse)
def mailbox_page(request: Request, session: SignedIn) -> HTMLResponse:
    _only(session, PersonRole.ADMIN, who="admins")
    directory = _services(request).dev_mailbox_dir
    messages = list_messages(directory, limit=200) if directory is not None and directory.exists() else []
    return _page(request, "admin/mailbox.html", title="Mailbox", session=session, messages=messages,
                 configured=directory is not None)


@router.get("/mailbox/{message_id}", response_class=HTMLResponse)
def mailbox_message(request: Request, message_id: str, session: SignedIn) -> HTMLResponse:
    _only(session, PersonRole.ADMIN, who="admins")
    directory = _services(request).dev_mailbox_dir
    message = read_message(directory, message_id) if directory is not None else None
    if message is None:
        return _message(request, "No such message", ["It may have been removed."], status_code=404,
                        session=session, link=(f"{PREFIX}/mailbox", "Back to the mailbox"))
    return _page(request, "admin/message.html", title=message.subject or "(no subject)", session=session,
                 message=message)
