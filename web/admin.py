"""The admin's pages (docs/design.md §8.3): organisations, the people who sign in and their roles, API tokens.

Each page calls what the API's route calls (`register_organisation`, `issue_token`, `list_tokens`,
`revoke_token`); people are the web app's own (`web.people`).
"""
from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from api.errors import ApiError
from api.routes.registry import NewOrganisation, register_organisation
from api.routes.tokens import NewToken, issue_token, list_tokens, revoke_token
from api.services.erasure import ERASED_NAME
from ledger.pg import schema
from web import people
from web.app import PREFIX, CsrfToken, SignedIn, _check_csrf, _only, _page, _services
from web.people import PersonRole, Session

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_ROLE_WORDS = {PersonRole.ADMIN: "Admin", PersonRole.LEAD: "Programme lead", PersonRole.COORDINATOR: "Coordinator",
               PersonRole.FRONT_DESK: "Front desk", PersonRole.VOLUNTEER: "Volunteer"}


def _admin(session: Session) -> None:
    _only(session, PersonRole.ADMIN, who="admins")


def _field_errors(error: ValidationError) -> dict[str, str]:
    """A request model's refusals as one message a field, in words a person reads."""
    found: dict[str, str] = {}
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "form"
        found.setdefault(field, _WORDS.get(field, "Check this answer"))
    return found


_WORDS = {
    "id": "Enter a short id of lower-case letters, numbers and dashes, like brixton-lunch-club",
    "name": "Enter the organisation's name",
    "area": "Enter the area code, like E09000022",
    "kinds": "Choose what the organisation does",
    "email": "Enter an e-mail address, like name@example.org",
    "display_name": "Enter their name",
    "role": "Choose their role",
    "org_id": "Choose their organisation",
}


def _organisations(request: Request) -> list[Any]:
    o = schema.organisations
    with _services(request).engine.connect() as conn:
        return list(conn.execute(select(o.c.id, o.c.name, o.c.area, o.c.kinds, o.c.auto_approve).order_by(o.c.name)))


# --- organisations -------------------------------------------------------------------------------------------


def _organisations_page(request: Request, session: Session, status_code: int = 200, **context: Any) -> HTMLResponse:
    return _page(request, "admin/organisations.html", status_code, title="Organisations", session=session,
                 organisations=_organisations(request), form=context.pop("form", {}), **context)


@router.get("/organisations", response_class=HTMLResponse)
def organisations_page(request: Request, session: SignedIn) -> HTMLResponse:
    _admin(session)
    return _organisations_page(request, session)


@router.post("/organisations", response_class=HTMLResponse)
def add_organisation(request: Request, session: SignedIn, csrf_token: CsrfToken = "",
                     id: Annotated[str, Form()] = "", name: Annotated[str, Form()] = "",
                     area: Annotated[str, Form()] = "", kinds: Annotated[list[str] | None, Form()] = None,
                     auto_approve: Annotated[str, Form()] = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    _admin(session)
    form = {"id": id, "name": name, "area": area, "kinds": kinds or [], "auto_approve": auto_approve == "yes"}
    try:
        body = NewOrganisation(**form)
    except ValidationError as refused:
        return _organisations_page(request, session, 422, errors=_field_errors(refused), form=form)
    try:
        register_organisation(_services(request), session.person.principal(), body)
    except ApiError as refused:
        if refused.code != "organisation_exists":
            raise
        return _organisations_page(request, session, 409, form=form,
                                   errors={"id": f"There is already an organisation with the id {id}"})
    return _organisations_page(request, session, notice=f"{body.name} is registered.")


# --- people who sign in --------------------------------------------------------------------------------------


def _people(request: Request) -> list[Any]:
    p = schema.people
    with _services(request).engine.connect() as conn:
        return list(conn.execute(select(p.c.id, p.c.display_name, p.c.email, p.c.role, p.c.org_id, p.c.volunteer_id,
                                        p.c.disabled_at).order_by(p.c.display_name)))


def _people_page(request: Request, session: Session, status_code: int = 200, **context: Any) -> HTMLResponse:
    return _page(request, "admin/people.html", status_code, title="People who sign in", session=session,
                 people=_people(request), organisations=_organisations(request), role_words=_ROLE_WORDS,
                 staff_roles=[r for r in PersonRole if r is not PersonRole.VOLUNTEER], erased_name=ERASED_NAME,
                 form=context.pop("form", {}), **context)


@router.get("/people", response_class=HTMLResponse)
def people_page(request: Request, session: SignedIn) -> HTMLResponse:
    _admin(session)
    return _people_page(request, session)


@router.post("/people", response_class=HTMLResponse)
def invite(request: Request, session: SignedIn, csrf_token: CsrfToken = "",
           display_name: Annotated[str, Form()] = "", email: Annotated[str, Form()] = "",
           role: Annotated[str, Form()] = "", org_id: Annotated[str, Form()] = "") -> HTMLResponse:
    """Staff are invited by e-mail: they sign in with a link to the address given (docs/design.md §8.1)."""
    _check_csrf(session, csrf_token)
    _admin(session)
    form = {"display_name": display_name.strip(), "email": email.strip(), "role": role, "org_id": org_id}
    errors: dict[str, str] = {}
    if not form["display_name"] or len(form["display_name"]) > 200:
        errors["display_name"] = _WORDS["display_name"]
    if "@" not in form["email"] or " " in form["email"] or len(form["email"]) > 254:
        errors["email"] = _WORDS["email"]
    try:
        chosen = PersonRole(role)
        if chosen is PersonRole.VOLUNTEER:
            raise ValueError(role)
    except ValueError:
        errors["role"] = _WORDS["role"]
        chosen = None
    organisations = {row.id: row for row in _organisations(request)}
    needs_org = chosen in (PersonRole.COORDINATOR, PersonRole.FRONT_DESK)
    if needs_org:
        kind = "partner" if chosen is PersonRole.FRONT_DESK else "community"
        if org_id not in organisations or kind not in organisations[org_id].kinds:
            errors["org_id"] = f"Choose a {kind} organisation"
    if errors:
        return _people_page(request, session, 422, errors=errors, form=form)
    assert chosen is not None
    with _services(request).engine.connect() as conn:
        taken = people.person_by_email(conn, form["email"]) is not None
    if taken:
        return _people_page(request, session, 409, form=form,
                            errors={"email": "Someone with that e-mail address can sign in already"})
    person = people.add_person(_services(request).engine, form["display_name"], chosen, email=form["email"],
                               org_id=org_id if needs_org else None, invited_by=session.person.id)
    return _people_page(request, session, notice=f"{person.display_name} can sign in now with a link sent to "
                                                 f"{person.email} from the sign-in page.")


@router.post("/people/{person_id}/disable", response_class=HTMLResponse)
def disable(request: Request, person_id: uuid.UUID, session: SignedIn, csrf_token: CsrfToken = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    _admin(session)
    if person_id == session.person.id:
        return _people_page(request, session, 422, notice="You cannot disable yourself.")
    name = people.disable(_services(request).engine, person_id, session.person.principal())
    notice = f"{name} can no longer sign in, and is signed out everywhere." if name else "Nobody to disable."
    return _people_page(request, session, notice=notice)


# --- API tokens ----------------------------------------------------------------------------------------------


def _tokens_page(request: Request, session: Session, status_code: int = 200, **context: Any) -> HTMLResponse:
    listed = list_tokens(_services(request).engine, session.person.principal())
    return _page(request, "admin/tokens.html", status_code, title="API tokens", session=session, tokens=listed,
                 organisations=_organisations(request), form=context.pop("form", {}), **context)


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, session: SignedIn) -> HTMLResponse:
    _admin(session)
    return _tokens_page(request, session)


@router.post("/tokens", response_class=HTMLResponse)
def make_token(request: Request, session: SignedIn, csrf_token: CsrfToken = "", role: Annotated[str, Form()] = "",
               org_id: Annotated[str, Form()] = "", label: Annotated[str, Form()] = "",
               expires_in_days: Annotated[str, Form()] = "365") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    _admin(session)
    form = {"role": role, "org_id": org_id, "label": label, "expires_in_days": expires_in_days}
    try:
        body = NewToken(role=role, org_id=org_id or None, label=label.strip(),
                        expires_in_days=int(expires_in_days) if expires_in_days.strip().isdigit() else 0)
        token, _, expires_at = issue_token(_services(request).engine, body, session.person.principal())
    except ValidationError as refused:
        errors = {str(p["loc"][0]): _TOKEN_WORDS.get(str(p["loc"][0]), "Check this answer") for p in refused.errors()}
        return _tokens_page(request, session, 422, errors=errors, form=form)
    except ApiError as refused:
        field = "org_id" if refused.code in ("invalid_scope", "unknown_organisation") else "role"
        return _tokens_page(request, session, 422, errors={field: _TOKEN_WORDS[field]}, form=form)
    return _tokens_page(request, session, new_token=token, new_expiry=expires_at)


_TOKEN_WORDS = {"role": "Choose what the token may do", "org_id": "An organisation's token needs its organisation, "
                "and only an organisation's token has one", "expires_in_days": "Enter 1 to 3650 days",
                "label": "Keep the note under 500 characters"}


@router.post("/tokens/{token_id}/revoke")
def revoke(request: Request, token_id: uuid.UUID, session: SignedIn, csrf_token: CsrfToken = "") -> Response:
    _check_csrf(session, csrf_token)
    _admin(session)
    revoke_token(_services(request).engine, session.person.principal(), token_id)
    return RedirectResponse(f"{PREFIX}/tokens", status_code=303)

