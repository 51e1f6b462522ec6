"""The volunteer coordinator's door (docs/design.md §8.3): a community organisation's members with their
references and balances, registering a volunteer, printing a sign-in card, logging hours for a member or a
group, the approval queue, and links to download the hours (§5.12). A coordinator acts as their organisation,
`org:{id}` (§8.2), through the same service functions as the API's routes (`api/services/`): the organisation
sees its own members and hours only.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
import re
from datetime import date as Date
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from api.errors import ApiError
from api.services import hours, members, volunteers
from api.services.outcomes import wait_outcomes
from api.services.volunteers import NewVolunteer
from ledger.activities import ACTIVITY_LABELS
from ledger.pg import schema
from ledger.pg.repository import LedgerRepository
from web import people
from web.app import (
    LONDON,
    PREFIX,
    CsrfToken,
    SignedIn,
    _check_csrf,
    _message,
    _only,
    _page,
    _services,
    _wait_outcome,
)
from web.people import Person, PersonRole, Session
from web.words import credits, refusal

router = APIRouter(prefix=PREFIX, include_in_schema=False)
WHO = "a community organisation's coordinators"

AGE_BANDS = [("under_16", "Under 16"), ("16-24", "16 to 24"), ("25-34", "25 to 34"), ("35-44", "35 to 44"),
             ("45-54", "45 to 54"), ("55-64", "55 to 64"), ("65+", "65 or over"),
             ("prefer_not_to_say", "Prefers not to say")]
SEB = [("professional", "Professional background (for example a manager, doctor, teacher or engineer)"),
       ("intermediate", "Intermediate background (for example an office worker, or self-employed)"),
       ("lower", "Working-class background (for example a shop worker, driver, cleaner or labourer)"),
       ("other", "Other (for example a carer, student, or never worked)"),
       ("prefer_not_to_say", "Prefers not to say")]
#: The main household earner's job at about 14, as the Social Mobility Commission's question lists them
#: (ledger.events.SebOccupation, docs/design.md §5.16), in the order the question asks them.
SEB_DETAIL = [
    ("modern_professional", "Modern professional (for example a teacher, nurse, social worker or software designer)"),
    ("clerical_and_intermediate", "Clerical and intermediate (for example a secretary, office clerk or call centre "
                                  "agent)"),
    ("senior_manager_or_administrator", "Senior manager or administrator (usually in charge of planning and running "
                                        "an organisation)"),
    ("technical_and_craft", "Technical and craft (for example a motor mechanic, plumber, printer or electrician)"),
    ("semi_routine_manual_and_service", "Semi-routine manual and service (for example a postal worker, machine "
                                        "operative, security guard or care worker)"),
    ("routine_manual_and_service", "Routine manual and service (for example an HGV driver, cleaner, porter or "
                                   "labourer)"),
    ("middle_or_junior_manager", "Middle or junior manager (for example an office manager, warehouse manager or "
                                 "restaurant manager)"),
    ("traditional_professional", "Traditional professional (for example an accountant, solicitor, doctor or "
                                 "civil engineer)"),
    ("long_term_unemployed", "Long-term unemployed (claimed benefits for more than a year)"),
    ("small_business_owner", "Small business owner employing fewer than 25 people"),
    ("other", "Other (for example retired, or this question does not apply)"),
    ("dont_know", "Does not know"),
    ("prefer_not_to_say", "Prefers not to say"),
]
#: What each field of the register form says when what was typed cannot be used (GOV.UK error messages).
FIELD_ERRORS = {
    "display_name": "Enter the volunteer's name, up to 200 characters",
    "email": "Enter an e-mail address, like name@example.com, or leave it empty",
    "area": "Enter the area code of where the volunteer lives, like E09000030",
    "reference": "Enter a reference of letters and numbers, up to 64 characters, or leave it empty",
    "consent_stats": "Say whether the volunteer agrees to their background being counted in statistics",
    "age_band": "Choose an age group",
    "seb": "Choose a background",
    "seb_detail": "Choose the main earner's job from the list",
    "first_time_volunteer": "Say whether this is their first time volunteering",
}


def _coordinator(session: Session) -> Person:
    person = _only(session, PersonRole.COORDINATOR, who=WHO)
    assert person.org_id is not None
    return person


def _organisation_name(request: Request, org_id: str) -> tuple[str, str, bool]:
    o = schema.organisations
    with _services(request).engine.connect() as conn:
        row = conn.execute(select(o.c.name, o.c.area, o.c.auto_approve).where(o.c.id == org_id)).one()
    return row.name, row.area, row.auto_approve


def _names(request: Request, volunteer_ids: list[str]) -> dict[str, str]:
    profiles = schema.volunteer_profiles
    with _services(request).engine.connect() as conn:
        rows = conn.execute(select(profiles.c.volunteer_id, profiles.c.display_name)
                            .where(profiles.c.volunteer_id.in_(volunteer_ids))).all()
    return {v: name or "(name erased)" for v, name in rows}


def _member(request: Request, person: Person, volunteer_id: str) -> tuple[members.Member, str]:
    """A current member of the coordinator's organisation and their name; another's volunteer is `NotAMember`."""
    assert person.org_id is not None
    try:
        member = members.current_member(_services(request), person.principal(), person.org_id, volunteer_id)
    except ApiError as refused:
        raise NotAMember from refused
    return member, _names(request, [volunteer_id]).get(volunteer_id, "(name erased)")


def hours_downloads(org_id: str, what: str, **filters: str) -> list[dict[str, str]]:
    """Links to the organisation's hours as CSV and as Excel (`GET /v1/organisations/{org}/hours.csv|.xlsx`, read
    with the session as the API's reads are, docs/design.md §8.1), with the filters that are set."""
    query = urlencode({name: value for name, value in filters.items() if value})
    base = f"/v1/organisations/{quote(org_id)}/hours"
    return [{"href": f"{base}.csv" + (f"?{query}" if query else ""), "words": f"{what} (CSV)"},
            {"href": f"{base}.xlsx" + (f"?{query}" if query else ""), "words": f"{what} (Excel)"}]


class NotAMember(Exception):
    """A page about a volunteer who is not a current member of the coordinator's organisation."""


def not_a_member_page(request: Request, session: Session | None) -> HTMLResponse:
    return _message(request, "You cannot use this page", [
        "That volunteer is not a member of your organisation."], status_code=403, session=session,
        link=(f"{PREFIX}/members", "Back to your members"))


# --- members --------------------------------------------------------------------------------------------------


@router.get("/members", response_class=HTMLResponse)
def members_page(request: Request, session: SignedIn, registered: str = "") -> HTMLResponse:
    person = _coordinator(session)
    assert person.org_id is not None
    services = _services(request)
    current = [m for m in members.of_organisation(services, person.principal(), person.org_id)
               if m.status == "member"]
    names = _names(request, [m.volunteer_id for m in current])
    repository = LedgerRepository(services.engine)
    rows = []
    for member in current:
        balance = repository.volunteer_balance(member.volunteer_id)
        rows.append({"id": member.volunteer_id, "name": names.get(member.volunteer_id, "(name erased)"),
                     "reference": member.reference, "balance": credits(balance.available),
                     "held": credits(balance.held) if balance.held else None})
    rows.sort(key=lambda row: row["name"].lower())
    org_name, _, _ = _organisation_name(request, person.org_id)
    notice = None
    if registered and registered in names:
        notice = f"{names[registered]} is registered and is now a member of {org_name}."
    return _page(request, "coordinator/members.html", title="Members", session=session, rows=rows,
                 org_name=org_name, notice=notice)


def _register_form(request: Request, session: Session, status_code: int = 200, **context: Any) -> HTMLResponse:
    assert session.person.org_id is not None
    _, area, _ = _organisation_name(request, session.person.org_id)
    context.setdefault("form", {"area": area})
    return _page(request, "coordinator/register.html", status_code, title="Register a volunteer", session=session,
                 age_bands=AGE_BANDS, seb_choices=SEB, seb_detail_choices=SEB_DETAIL, **context)


@router.get("/members/new", response_class=HTMLResponse)
def register_page(request: Request, session: SignedIn) -> HTMLResponse:
    _coordinator(session)
    return _register_form(request, session)


_YES_NO = {"yes": True, "no": False}


@router.post("/members/new", response_model=None)
def register(request: Request, session: SignedIn, csrf_token: CsrfToken = "",
             display_name: Annotated[str, Form()] = "", email: Annotated[str, Form()] = "",
             area: Annotated[str, Form()] = "", reference: Annotated[str, Form()] = "",
             consent_stats: Annotated[str, Form()] = "", age_band: Annotated[str, Form()] = "",
             seb: Annotated[str, Form()] = "", seb_detail: Annotated[str, Form()] = "",
             first_time_volunteer: Annotated[str, Form()] = "") -> Response:
    _check_csrf(session, csrf_token)
    person = _coordinator(session)
    form = {"display_name": display_name, "email": email, "area": area, "reference": reference,
            "consent_stats": consent_stats, "age_band": age_band, "seb": seb, "seb_detail": seb_detail,
            "first_time_volunteer": first_time_volunteer}
    fields: dict[str, Any] = {"display_name": display_name, "area": area.strip().upper(),
                              "consent_stats": _YES_NO.get(consent_stats)}
    for name, value in (("email", email.strip()), ("reference", reference.strip()), ("age_band", age_band),
                        ("seb", seb), ("seb_detail", seb_detail)):
        if value:
            fields[name] = value
    if first_time_volunteer in _YES_NO:
        fields["first_time_volunteer"] = _YES_NO[first_time_volunteer]
    errors: dict[str, str] = {}
    body = None
    try:
        body = NewVolunteer.model_validate(fields)  # the API's own model: the same validation at both doors
    except ValidationError as invalid:
        for error in invalid.errors():
            field = str(error["loc"][0]) if error["loc"] else "display_name"
            errors.setdefault(field if field in FIELD_ERRORS else "display_name",
                              FIELD_ERRORS.get(field, FIELD_ERRORS["display_name"]))
    services = _services(request)
    if body is not None and body.email:
        with services.engine.connect() as conn:
            if people.person_by_email(conn, body.email) is not None:
                errors["email"] = "Someone already signs in with that e-mail address: use another, or leave it empty"
    if errors or body is None:
        ordered = {name: errors[name] for name in FIELD_ERRORS if name in errors}
        return _register_form(request, session, 422, errors=ordered, form=form)
    try:
        with services.engine.begin() as conn:
            volunteer_id = volunteers.register(services, person.principal(), body, conn)
            people.add_person(conn, body.display_name, PersonRole.VOLUNTEER, email=body.email,
                              volunteer_id=volunteer_id, invited_by=person.id)
    except ApiError as refused:
        field = "reference" if refused.code == "reference_taken" else "display_name"
        message = ("Another member already has that reference: check it, or leave it empty"
                   if refused.code == "reference_taken" else refusal(refused.code).capitalize())
        return _register_form(request, session, 409 if refused.code == "reference_taken" else 422,
                              errors={field: message}, form=form)
    return RedirectResponse(f"{PREFIX}/members?registered={volunteer_id}", status_code=303)


# --- sign-in cards --------------------------------------------------------------------------------------------


def card_qr_svg(url: str) -> str:
    """The sign-in URL as a QR code, an SVG shown inline (no image file, nothing fetched from elsewhere), made as
    the spend code's is (`api.spend_codes.qr_svg`)."""
    out = io.BytesIO()
    segno.make(url, error="m", micro=False).save(out, kind="svg", scale=5, border=2, xmldecl=False,
                                                 title="Sign-in card", svgclass="sign-in-card-qr")
    return out.getvalue().decode()


@router.get("/members/{volunteer_id}/card", response_class=HTMLResponse)
def card_page(request: Request, volunteer_id: str, session: SignedIn) -> HTMLResponse:
    person = _coordinator(session)
    try:
        _, name = _member(request, person, volunteer_id)
    except NotAMember:
        return not_a_member_page(request, session)
    with _services(request).engine.connect() as conn:
        signer = people.volunteer_person(conn, volunteer_id)
        has_card = signer is not None and people.has_live_card(conn, signer.id)
    return _page(request, "coordinator/card_confirm.html", title=f"Print a sign-in card for {name}", session=session,
                 name=name, volunteer_id=volunteer_id, has_card=has_card)


@router.post("/members/{volunteer_id}/card", response_class=HTMLResponse)
def make_card(request: Request, volunteer_id: str, session: SignedIn, csrf_token: CsrfToken = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    person = _coordinator(session)
    try:
        _, name = _member(request, person, volunteer_id)
    except NotAMember:
        return not_a_member_page(request, session)
    engine = _services(request).engine
    with engine.begin() as conn:
        signer = people.volunteer_person(conn, volunteer_id)
        if signer is None:  # registered through the API: they sign in from now on as this person
            signer = people.add_person(conn, name, PersonRole.VOLUNTEER, volunteer_id=volunteer_id,
                                       invited_by=person.id)
    code = people.new_card(engine, signer.id)  # voids the card they had
    org_name, _, _ = _organisation_name(request, person.org_id or "")
    url = f"{str(request.base_url).rstrip('/')}{PREFIX}/sign-in?card={code}"
    return _page(request, "coordinator/card.html", title=f"Sign-in card for {name}", session=session, name=name,
                 code_shown=f"{code[:4]} {code[4:8]} {code[8:]}", code_spoken=" ".join(code), org_name=org_name,
                 sign_in_url=f"{str(request.base_url).rstrip('/')}{PREFIX}/sign-in", qr_svg=card_qr_svg(url),
                 card_number=volunteer_id)


# --- logging hours --------------------------------------------------------------------------------------------


def read_hours(typed: str) -> int | None:
    """Minutes from hours as a person types them: "1.5", "2", "1:30"; None if not between a minute and 24 hours."""
    text = typed.strip().replace(",", ".")
    if (clock := re.fullmatch(r"([0-9]{1,2}):([0-5][0-9])", text)) is not None:
        minutes = int(clock[1]) * 60 + int(clock[2])
    elif re.fullmatch(r"[0-9]{1,2}(\.[0-9]{1,2})?|\.[0-9]{1,2}", text):
        minutes = round(float(text) * 60)
    else:
        return None
    return minutes if 1 <= minutes <= 1440 else None


def hours_words(minutes: int) -> str:
    """'1 hour 30 minutes', '2 hours', '45 minutes'."""
    whole, rest = divmod(minutes, 60)
    parts = ([f"{whole} hour{'' if whole == 1 else 's'}"] if whole else []) + \
            ([f"{rest} minute{'' if rest == 1 else 's'}"] if rest else [])
    return " ".join(parts)


def date_words(day: Date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def _today() -> Date:
    return datetime.now(LONDON).date()


def _read_hours_form(date: str, hours_worked: str, activity: str,
                     category: str = "other") -> tuple[dict[str, str], Date | None, int | None]:
    """The date, minutes, activity and kind of activity of an hours form as typed, with a message a field for
    what is wrong."""
    errors: dict[str, str] = {}
    day: Date | None = None
    try:
        day = Date.fromisoformat(date.strip())
    except ValueError:
        errors["date"] = "Enter the date the hours were worked, like 30/11/2026"
    minutes = read_hours(hours_worked)
    if minutes is None:
        errors["hours"] = "Enter the hours worked, like 1.5 or 1:30, up to 24"
    if not activity.strip() or len(activity.strip()) > 200:
        errors["activity"] = "Say what they did, in up to 200 characters, like Gardening"
    if category not in ACTIVITY_LABELS:
        errors["category"] = "Choose the kind of activity from the list"
    return errors, day, minutes


_HOURS_FIELDS = {"too_many_hours": "hours", "invalid_minutes": "hours", "date_too_old": "date",
                 "date_in_future": "date"}


def _hours_form(request: Request, session: Session, volunteer_id: str, name: str, status_code: int = 200,
                **context: Any) -> HTMLResponse:
    context.setdefault("form", {"date": _today().isoformat()})
    assert session.person.org_id is not None
    downloads = hours_downloads(session.person.org_id, f"{name}'s hours, with what was decided",
                                volunteer_id=volunteer_id)
    return _page(request, "coordinator/hours.html", status_code, title=f"Log hours for {name}", session=session,
                 volunteer_id=volunteer_id, name=name, kinds=ACTIVITY_LABELS, downloads=downloads,
                 downloads_heading=f"Download {name}'s hours", **context)


@router.get("/members/{volunteer_id}/hours", response_class=HTMLResponse)
def hours_page(request: Request, volunteer_id: str, session: SignedIn) -> HTMLResponse:
    person = _coordinator(session)
    try:
        _, name = _member(request, person, volunteer_id)
    except NotAMember:
        return not_a_member_page(request, session)
    return _hours_form(request, session, volunteer_id, name)


@router.post("/members/{volunteer_id}/hours", response_class=HTMLResponse)
def log_hours(request: Request, volunteer_id: str, session: SignedIn, csrf_token: CsrfToken = "",
              date: Annotated[str, Form()] = "", hours_worked: Annotated[str, Form()] = "",
              activity: Annotated[str, Form()] = "", category: Annotated[str, Form()] = "other") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    person = _coordinator(session)
    assert person.org_id is not None
    try:
        _, name = _member(request, person, volunteer_id)
    except NotAMember:
        return not_a_member_page(request, session)
    form = {"date": date, "hours": hours_worked, "activity": activity, "category": category}
    errors, day, minutes = _read_hours_form(date, hours_worked, activity, category)
    if errors:
        return _hours_form(request, session, volunteer_id, name, 422, errors=errors, form=form)
    assert minutes is not None and day is not None
    services = _services(request)
    try:
        event_id = hours.log(services, person.principal(), volunteer_id, person.org_id, day, minutes,
                             activity.strip(), category)
    except (ApiError, ValueError) as refused:
        code = refused.code if isinstance(refused, ApiError) else "invalid_request"
        field = _HOURS_FIELDS.get(code, "activity")
        return _hours_form(request, session, volunteer_id, name, 422,
                           errors={field: refusal(code).capitalize()}, form=form)
    status, reason = _wait_outcome(services, event_id)
    what = f"{hours_words(minutes)} of {activity.strip()} on {date_words(day)}"
    if status == "rejected":
        outcome, refused_ = f"Not logged: {refusal(reason or '')}.", True
    elif status == "applied" and hours.decision(services, event_id) == "approved":
        outcome, refused_ = f"Approved: {what} for {name}.", False
    elif status == "applied":
        outcome, refused_ = f"Logged: {what} for {name}, waiting for approval.", False
    else:
        outcome, refused_ = f"Sent: {what} for {name}. It will show in a moment.", False
    # The date and activity stay filled in: a coordinator often logs several sessions of one day in a row.
    return _hours_form(request, session, volunteer_id, name, outcome=outcome, refused=refused_,
                       form={"date": day.isoformat(), "activity": activity.strip(), "category": category})


# --- the approval queue ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilter:
    """Which waiting hours the queue shows: one member's, and work done from / to a day (empty: all)."""

    member: str = ""
    from_day: str = ""
    to_day: str = ""

    def keeps(self, log: hours.PendingLog) -> bool:
        if self.member and log.volunteer_id != self.member:
            return False
        return not ((self._day(self.from_day) and log.worked_on < self._day(self.from_day))  # type: ignore[operator]
                    or (self._day(self.to_day) and log.worked_on > self._day(self.to_day)))  # type: ignore[operator]

    @staticmethod
    def _day(text: str) -> Date | None:
        try:
            return Date.fromisoformat(text) if text else None
        except ValueError:
            return None


def _waiting(request: Request, session: Session, shown: QueueFilter) -> tuple[list[hours.PendingLog], list[Any]]:
    assert session.person.org_id is not None
    every = hours.pending(_services(request), session.person.org_id)
    members_waiting = sorted({(log.volunteer_id, log.name) for log in every}, key=lambda m: m[1].lower())
    return [log for log in every if shown.keeps(log)], members_waiting


def _queue(request: Request, session: Session, status_code: int = 200, selected: set[str] | None = None,
           shown: QueueFilter | None = None, **context: Any) -> HTMLResponse:
    shown = shown or QueueFilter()
    logs, members_waiting = _waiting(request, session, shown)
    rows = [{"id": str(log.event_id), "name": log.name, "reference": log.reference,
             "date": date_words(log.worked_on), "hours": hours_words(log.minutes), "activity": log.activity}
            for log in logs]
    assert session.person.org_id is not None
    day = QueueFilter._day
    downloads = [*hours_downloads(session.person.org_id, "The hours shown, waiting for approval", status="pending",
                                  volunteer_id=shown.member, **{"from": str(day(shown.from_day) or ""),
                                                                "to": str(day(shown.to_day) or "")}),
                 *hours_downloads(session.person.org_id, "All your organisation's hours, with what was decided")]
    return _page(request, "coordinator/approvals.html", status_code, title="Hours waiting for approval",
                 session=session, rows=rows, selected=selected or set(), shown=shown,
                 members_waiting=members_waiting, downloads=downloads, **context)


@router.get("/approvals", response_class=HTMLResponse)
def approvals_page(request: Request, session: SignedIn, member: str = "", from_day: str = "",
                   to_day: str = "") -> HTMLResponse:
    _coordinator(session)
    return _queue(request, session, shown=QueueFilter(member, from_day, to_day))


@router.post("/approvals", response_class=HTMLResponse)
def decide(request: Request, session: SignedIn, csrf_token: CsrfToken = "",
           action: Annotated[str, Form()] = "", log: Annotated[list[str] | None, Form()] = None,
           reason: Annotated[str, Form()] = "", member: Annotated[str, Form()] = "",
           from_day: Annotated[str, Form()] = "", to_day: Annotated[str, Form()] = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    person = _coordinator(session)
    assert person.org_id is not None
    services = _services(request)
    chosen = log or []
    shown = QueueFilter(member, from_day, to_day)
    if action == "select_all":  # select all without JavaScript: the same page, every box shown ticked
        waiting, _ = _waiting(request, session, shown)
        return _queue(request, session, selected={str(p.event_id) for p in waiting}, shown=shown, reason=reason)
    if action == "select_none":
        return _queue(request, session, shown=shown, reason=reason)
    if not chosen:
        return _queue(request, session, 422, shown=shown, reason=reason,
                      errors={"log-first": "Select the hours to approve or reject"})
    approve = action != "reject"
    if not approve and not reason.strip():
        return _queue(request, session, 422, selected=set(chosen), shown=shown,
                      errors={"reason": "Say why the hours are rejected: the volunteer may be told"})
    if len(reason) > 500:
        return _queue(request, session, 422, selected=set(chosen), shown=shown,
                      errors={"reason": "Give the reason in up to 500 characters"}, reason=reason)
    waiting = {p.event_id: p for p in hours.pending(services, person.org_id)}
    outcomes: list[tuple[str, bool]] = []
    wanted: list[UUID] = []
    for typed in dict.fromkeys(chosen):
        try:
            log_id = UUID(typed)
        except ValueError:
            continue
        if log_id in waiting:
            wanted.append(log_id)
        else:
            outcomes.append(("Those hours were decided already, or are not your organisation's.", True))
    decided = hours.decide_many(services, person.principal(), wanted, approve, reason.strip())  # one event a log
    told = wait_outcomes(services, [d.event_id for d in decided if d.event_id is not None])
    for decision in decided:
        found = waiting[decision.log_event_id]
        what = f"{found.name}, {hours_words(found.minutes)} on {date_words(found.worked_on)}"
        not_done = f"Not {'approved' if approve else 'rejected'}: {what}"
        if decision.event_id is None:  # refused at once, by the rules the worker would apply
            outcomes.append((f"{not_done}: {refusal(decision.code or '')}.", True))
            continue
        status, why = told[decision.event_id]
        if status == "rejected":
            outcomes.append((f"{not_done}: {refusal(why or '')}.", True))
        elif status == "applied":
            outcomes.append((f"{'Approved' if approve else 'Rejected'}: {what}.", False))
        else:
            outcomes.append((f"Sent: {what}. It will show in a moment.", False))
    return _queue(request, session, outcomes=outcomes, shown=shown)


# --- hours for a group ------------------------------------------------------------------------------------------


def _current_members(request: Request, person: Person) -> list[dict[str, Any]]:
    assert person.org_id is not None
    current = [m for m in members.of_organisation(_services(request), person.principal(), person.org_id)
               if m.status == "member"]
    names = _names(request, [m.volunteer_id for m in current])
    rows = [{"id": m.volunteer_id, "name": names.get(m.volunteer_id, "(name erased)"), "reference": m.reference}
            for m in current]
    return sorted(rows, key=lambda row: row["name"].lower())


def _group_form(request: Request, session: Session, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("form", {"date": _today().isoformat()})
    context.setdefault("chosen", set())
    assert session.person.org_id is not None
    downloads = hours_downloads(session.person.org_id, "All your organisation's hours, with what was decided")
    return _page(request, "coordinator/group.html", status_code, title="Log hours for a group", session=session,
                 rows=_current_members(request, session.person), kinds=ACTIVITY_LABELS, downloads=downloads,
                 **context)


@router.get("/hours/group", response_class=HTMLResponse)
def group_page(request: Request, session: SignedIn) -> HTMLResponse:
    _coordinator(session)
    return _group_form(request, session)


@router.post("/hours/group", response_class=HTMLResponse)
def log_group(request: Request, session: SignedIn, csrf_token: CsrfToken = "",
              date: Annotated[str, Form()] = "", hours_worked: Annotated[str, Form()] = "",
              activity: Annotated[str, Form()] = "", category: Annotated[str, Form()] = "other",
              volunteer: Annotated[list[str] | None, Form()] = None,
              approve: Annotated[str, Form()] = "") -> HTMLResponse:
    """One activity, many volunteers: one log each (each volunteer's own day counts), and, when asked, one
    decision for all of them: each still its own approval event (docs/design.md §8.3)."""
    _check_csrf(session, csrf_token)
    person = _coordinator(session)
    assert person.org_id is not None
    chosen = list(dict.fromkeys(volunteer or []))
    form = {"date": date, "hours": hours_worked, "activity": activity, "category": category,
            "approve": approve == "yes"}
    errors, day, minutes = _read_hours_form(date, hours_worked, activity, category)
    names = {row["id"]: row["name"] for row in _current_members(request, person)}
    if not chosen or any(v not in names for v in chosen):
        errors["volunteers"] = "Choose the members who took part"
    elif len(chosen) > hours.MAX_AT_ONCE:
        errors["volunteers"] = f"Choose up to {hours.MAX_AT_ONCE} members at a time"
    if errors:
        return _group_form(request, session, 422, errors=errors, form=form, chosen=set(chosen))
    assert minutes is not None and day is not None
    services = _services(request)
    results: list[str] = []
    logged = hours.log_group(services, person.principal(), person.org_id, chosen, day, minutes, activity.strip(),
                             category, approve=form["approve"])
    approvals = wait_outcomes(services, [o.approval_event_id for o in logged if o.approval_event_id is not None])
    for outcome in logged:
        name = names[outcome.volunteer_id]
        if outcome.outcome == "refused":
            results.append(f"{name}: not logged: {refusal(outcome.code or '')}.")
        elif outcome.outcome == "approved_automatically":
            results.append(f"{name}: approved.")
        elif outcome.outcome == "not_approved":
            results.append(f"{name}: logged, not approved: {refusal(outcome.code or '')}.")
        elif outcome.approval_event_id is not None:
            decided, why = approvals[outcome.approval_event_id]
            results.append(f"{name}: approved." if decided == "applied" else
                           f"{name}: logged, not approved: {refusal(why or '')}." if decided == "rejected" else
                           f"{name}: logged, the approval will show in a moment.")
        else:
            results.append(f"{name}: logged, waiting for approval.")
    what = f"{hours_words(minutes)} of {activity.strip()} on {date_words(day)}"
    return _group_form(request, session, outcome=what, results=results,
                       form={"date": date, "hours": hours_worked, "activity": activity, "category": category})
