"""Consent and a volunteer's own data in the web app (docs/design.md §5.7, §8.3): the volunteer's privacy page,
with their answer, its history and a download of everything held about them, and the coordinator's page that
records a member's change of answer. Both change consent through `api.services.consent.change`, the rule
`PUT /v1/volunteers/{id}/consent` applies, and the download is `api.services.subject_access`, what
`GET /v1/volunteers/{id}/export` answers."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from api.errors import ApiError
from api.services import consent, subject_access
from api.services.consent import ConsentAnswer
from ledger.pg import schema
from web.app import LONDON, PREFIX, CsrfToken, SignedIn, _check_csrf, _message, _only, _page, _services
from web.coordinator import AGE_BANDS, SEB, NotAMember, _coordinator, _member, not_a_member_page
from web.people import Person, PersonRole, Session
from web.volunteer import WHO as VOLUNTEERS

router = APIRouter(prefix=PREFIX, include_in_schema=False)
_ANSWER_ERRORS = {"consent_stats": "Choose yes or no", "age_band": "Choose an age group",
                  "seb": "Choose a background"}


def _moment(at: datetime) -> str:
    local = at.astimezone(LONDON)
    return f"{local.day} {local:%B %Y} at {local:%H:%M}"


def _who(recorded_by: str, volunteer_id: str, org_names: dict[str, str], *, own_page: bool) -> str:
    if recorded_by == f"volunteer:{volunteer_id}":
        return "by you" if own_page else "by the volunteer"
    if recorded_by.startswith("org:"):
        return f"by {org_names.get(recorded_by[4:], 'an organisation')}"
    if recorded_by == "registration":
        return "when signing up"
    return "by the programme's administrator"


def _history(request: Request, found: consent.Consent, *, own_page: bool) -> list[str]:
    o = schema.organisations
    with _services(request).engine.connect() as conn:
        names = dict(conn.execute(select(o.c.id, o.c.name)).all())
    return [f"{_moment(c.changed_at)}: {'agreed' if c.consent_stats else 'did not agree'} "
            f"{_who(c.recorded_by, found.volunteer_id, names, own_page=own_page)}"
            for c in reversed(found.history)]


def _answer(consent_stats: str, age_band: str, seb: str) -> tuple[ConsentAnswer | None, dict[str, str]]:
    """The form's answer through the API's own model; errors by field, in words."""
    if consent_stats not in ("yes", "no"):
        return None, {"consent_stats": _ANSWER_ERRORS["consent_stats"]}
    agreed = consent_stats == "yes"
    try:
        return ConsentAnswer(consent_stats=agreed, age_band=(age_band or None) if agreed else None,
                             seb=(seb or None) if agreed else None), {}
    except ValidationError as invalid:
        return None, {str(e["loc"][0]): _ANSWER_ERRORS.get(str(e["loc"][0]), "Check this answer")
                      for e in invalid.errors()}


def _form_context(request: Request, found: consent.Consent, *, own_page: bool) -> dict[str, object]:
    return {"consent_stats": found.consent_stats, "age_band": found.age_band or "", "seb": found.seb or "",
            "history": _history(request, found, own_page=own_page),
            "age_bands": AGE_BANDS, "seb_choices": SEB}


class NotSaved(Exception):
    """The change could not be made (the broker did not take its event): nothing changed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _save(request: Request, person: Person, volunteer_id: str, consent_stats: str, age_band: str,
          seb: str) -> tuple[consent.Consent, dict[str, str], bool]:
    """(the consent now held, the form's errors, whether it was saved) for a posted answer."""
    services = _services(request)
    answer, errors = _answer(consent_stats, age_band, seb)
    if answer is None:
        return consent.read(services, person.principal(), volunteer_id), errors, False
    try:
        return consent.change(services, person.principal(), volunteer_id, answer), {}, True
    except ApiError as refused:
        raise NotSaved(refused.status) from refused


def _not_saved(request: Request, session: Session, status: int, link: tuple[str, str]) -> HTMLResponse:
    return _message(request, "The answer was not saved", [
        "Something went wrong on our side. Nothing has changed; please try again in a minute."],
        status_code=status, session=session, link=link)


# --- the volunteer's privacy page ------------------------------------------------------------------------------


def _volunteer(session: Session) -> tuple[Person, str]:
    person = _only(session, PersonRole.VOLUNTEER, who=VOLUNTEERS)
    assert person.volunteer_id is not None
    return person, person.volunteer_id


@router.get("/privacy", response_class=HTMLResponse)
def privacy_page(request: Request, session: SignedIn) -> HTMLResponse:
    person, volunteer_id = _volunteer(session)
    found = consent.read(_services(request), person.principal(), volunteer_id)
    return _page(request, "volunteer/privacy.html", title="Your privacy", session=session,
                 **_form_context(request, found, own_page=True))


@router.post("/privacy", response_class=HTMLResponse)
def change_own_consent(request: Request, session: SignedIn, csrf_token: CsrfToken = "",
                       consent_stats: Annotated[str, Form()] = "", age_band: Annotated[str, Form()] = "",
                       seb: Annotated[str, Form()] = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    person, volunteer_id = _volunteer(session)
    try:
        found, errors, saved = _save(request, person, volunteer_id, consent_stats, age_band, seb)
    except NotSaved as failed:
        return _not_saved(request, session, failed.status, (f"{PREFIX}/privacy", "Back to your privacy"))
    notice = None if not saved else (
        "Saved: your age and background will be counted in the statistics." if found.consent_stats else
        "Saved: your age and background will not be counted, and your answers about them are deleted.")
    return _page(request, "volunteer/privacy.html", 422 if errors else 200, title="Your privacy", session=session,
                 errors=errors, notice=notice, **_form_context(request, found, own_page=True))


def _download(request: Request, session: Session, as_zip: bool) -> Response:
    person, volunteer_id = _volunteer(session)
    sections = subject_access.export(_services(request).engine, person.principal(), volunteer_id)
    body = subject_access.as_csv_bundle(sections) if as_zip else subject_access.as_json(sections)
    suffix, media = ("zip", "application/zip") if as_zip else ("json", "application/json")
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="my-timecredits-data.{suffix}"'})


@router.get("/privacy/my-data.zip", response_class=Response)
def download_bundle(request: Request, session: SignedIn) -> Response:
    return _download(request, session, as_zip=True)


@router.get("/privacy/my-data.json", response_class=Response)
def download_json(request: Request, session: SignedIn) -> Response:
    return _download(request, session, as_zip=False)


# --- the coordinator records a member's answer -------------------------------------------------------------------


@router.get("/members/{volunteer_id}/consent", response_class=HTMLResponse)
def member_consent_page(request: Request, volunteer_id: str, session: SignedIn) -> HTMLResponse:
    person = _coordinator(session)
    try:
        _, name = _member(request, person, volunteer_id)
    except NotAMember:
        return not_a_member_page(request, session)
    found = consent.read(_services(request), person.principal(), volunteer_id)
    return _page(request, "coordinator/consent.html", title=f"Consent for {name}", session=session, name=name,
                 volunteer_id=volunteer_id, **_form_context(request, found, own_page=False))


@router.post("/members/{volunteer_id}/consent", response_class=HTMLResponse)
def record_member_consent(request: Request, volunteer_id: str, session: SignedIn, csrf_token: CsrfToken = "",
                          consent_stats: Annotated[str, Form()] = "", age_band: Annotated[str, Form()] = "",
                          seb: Annotated[str, Form()] = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    person = _coordinator(session)
    try:
        _, name = _member(request, person, volunteer_id)
    except NotAMember:
        return not_a_member_page(request, session)
    try:
        found, errors, saved = _save(request, person, volunteer_id, consent_stats, age_band, seb)
    except NotSaved as failed:
        return _not_saved(request, session, failed.status, (f"{PREFIX}/members", "Back to your members"))
    notice = None if not saved else (
        f"Saved: {name} agrees to their age and background being counted." if found.consent_stats else
        f"Saved: {name} does not agree; their answers about age and background are deleted.")
    return _page(request, "coordinator/consent.html", 422 if errors else 200, title=f"Consent for {name}",
                 session=session, name=name, volunteer_id=volunteer_id, errors=errors, notice=notice,
                 **_form_context(request, found, own_page=False))

