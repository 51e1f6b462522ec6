"""Corrections and the audit log in the web app (docs/design.md §5.14, §8.3): a coordinator corrects their
organisation's recent approvals, an admin any entry by its id, both through `api.services.corrections.reverse`,
the rule `POST /v1/entries/{id}/reverse` applies; an admin reads and downloads the audit log, what
`GET /v1/audit` answers."""
from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from api.errors import ApiError
from api.services import audit, corrections
from ledger.accounts import volunteer_account
from ledger.domain import EntryKind, RecordedEntry
from ledger.events import CORRECTION_REASONS
from ledger.pg import schema
from web.app import PREFIX, CsrfToken, SignedIn, _check_csrf, _message, _only, _page, _services, _wait_outcome
from web.coordinator import date_words, hours_words
from web.people import PersonRole, Session
from web.volunteer import day
from web.words import credits, refusal

router = APIRouter(prefix=PREFIX, include_in_schema=False)
WHO = "a community organisation's coordinators and the programme's admins"

#: Each reason's words, in the order the form offers them.
REASON_WORDS = {
    "approved_in_error": "Approved by mistake: the hours were not given",
    "wrong_volunteer": "Logged for the wrong volunteer",
    "wrong_amount": "The wrong number of hours or credits",
    "duplicate": "Logged or paid twice",
    "made_by_mistake": "Made by mistake (a booking, payment or gift)",
    "other": "Another reason",
}
assert tuple(REASON_WORDS) == CORRECTION_REASONS
KIND_WORDS = {
    EntryKind.HOURS_APPROVED: "Credits earned for hours",
    EntryKind.OPPORTUNITY_BOOKED: "Credits held for a booking",
    EntryKind.CREDITS_REDEEMED: "A payment to a partner",
    EntryKind.CREDITS_GIFTED: "A gift of credits",
}
ACTION_WORDS = {
    "entry_correction_requested": "Entry corrected", "membership_started": "Membership started",
    "membership_ended": "Membership ended", "token_issued": "API token made", "token_revoked": "API token revoked",
    "person_disabled": "Sign-in switched off", "consent_recorded": "Consent recorded for a volunteer",
    "volunteer_erased": "Volunteer erased",
}
assert set(ACTION_WORDS) == set(audit.ACTIONS)


def _corrector(session: Session) -> None:
    _only(session, PersonRole.COORDINATOR, PersonRole.ADMIN, who=WHO)


def _name(request: Request, volunteer_id: str | None) -> str:
    if volunteer_id is None:
        return "(no volunteer)"
    profiles = schema.volunteer_profiles
    with _services(request).engine.connect() as conn:
        name = conn.execute(select(profiles.c.display_name)
                            .where(profiles.c.volunteer_id == volunteer_id)).scalar_one_or_none()
    return name or "(name erased)"


def _described(request: Request, entry: RecordedEntry) -> list[tuple[str, str]]:
    """The entry as rows of a summary list: what, who, how many credits, when."""
    amount = next((p.amount for p in entry.postings if p.account == volunteer_account(entry.volunteer_id or "")), 0)
    rows = [("What", KIND_WORDS.get(entry.kind, entry.kind.value)), ("Volunteer", _name(request, entry.volunteer_id)),
            ("Credits", credits(abs(amount)))]
    if entry.occurred_at is not None:
        rows.append(("When", day(entry.occurred_at)))
    return rows


@router.get("/corrections", response_class=HTMLResponse)
def corrections_page(request: Request, session: SignedIn,
                     entry: Annotated[str, Query(max_length=100)] = "") -> HTMLResponse:
    """A coordinator: the approvals they may still correct. An admin: an entry's id to correct."""
    _corrector(session)
    person = session.person
    if person.role is PersonRole.ADMIN:
        if entry.strip():
            try:
                return RedirectResponse(f"{PREFIX}/entries/{UUID(entry.strip())}/correct", status_code=303)
            except ValueError:
                return _page(request, "corrections/find.html", 422, title="Correct an entry", session=session,
                             entry=entry, errors={"entry": "Enter the entry's id from the statement, like "
                                                           "1b4e28ba-2fa1-11d2-883f-0016d3cca427"})
        return _page(request, "corrections/find.html", title="Correct an entry", session=session, entry="")
    assert person.org_id is not None
    rows = [{"event_id": a.event_id, "name": a.name, "hours": hours_words(a.minutes),
             "worked_on": date_words(a.worked_on), "credits": credits(a.amount), "approved": day(a.approved_at)}
            for a in corrections.recent_approvals(_services(request), person.org_id)]
    return _page(request, "corrections/approvals.html", title="Correct an approval", session=session, rows=rows)


def _form(request: Request, session: Session, event_id: UUID, entry: RecordedEntry, status_code: int = 200,
          **context: object) -> HTMLResponse:
    context.setdefault("form", {"reason_code": "", "reason": ""})
    return _page(request, "corrections/form.html", status_code, title="Correct this entry", session=session,
                 event_id=event_id, summary=_described(request, entry), reasons=REASON_WORDS, **context)


def _refused(request: Request, session: Session, refused: ApiError) -> HTMLResponse:
    # A 403 here is always the correction rule's: an organisation corrects its own approvals only.
    code = "not_yours_to_correct" if refused.code == "forbidden" else refused.code
    return _message(request, "This entry cannot be corrected here", [f"Not corrected: {refusal(code)}."],
                    status_code=refused.status, session=session, link=(f"{PREFIX}/corrections", "Back"))


@router.get("/entries/{event_id}/correct", response_class=HTMLResponse)
def correct_page(request: Request, event_id: UUID, session: SignedIn) -> HTMLResponse:
    _corrector(session)
    try:
        entry = corrections.correctable(_services(request), session.person.principal(), event_id)
    except ApiError as refused:
        return _refused(request, session, refused)
    return _form(request, session, event_id, entry)


@router.post("/entries/{event_id}/correct", response_class=HTMLResponse)
def correct(request: Request, event_id: UUID, session: SignedIn, csrf_token: CsrfToken = "",
            reason_code: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    _corrector(session)
    services, principal = _services(request), session.person.principal()
    try:
        entry = corrections.correctable(services, principal, event_id)
    except ApiError as refused:
        return _refused(request, session, refused)
    errors = {}
    if reason_code not in REASON_WORDS:
        errors["reason_code"] = "Choose why the entry is wrong"
    if not reason.strip() or len(reason.strip()) > 500:
        errors["reason"] = "Say what was wrong, in up to 500 characters: the volunteer reads it on their statement"
    if errors:
        return _form(request, session, event_id, entry, 422, errors=errors,
                     form={"reason_code": reason_code, "reason": reason})
    try:
        correction_id = corrections.reverse(services, principal, event_id, reason.strip(), reason_code)
    except ApiError as refused:
        return _refused(request, session, refused)
    status, why = _wait_outcome(services, correction_id)
    if status == "rejected":
        return _message(request, "Not corrected", [f"Not corrected: {refusal(why or '')}."], status_code=409,
                        session=session, link=(f"{PREFIX}/corrections", "Back"))
    said = ("Corrected: the credits are back where they were, and the volunteer's statement says why."
            if status == "applied" else "Sent: the correction will show on the volunteer's statement in a moment.")
    return _message(request, "Entry corrected" if status == "applied" else "Correction sent", [said],
                    session=session, link=(f"{PREFIX}/corrections", "Correct another"))


# --- the audit log ---------------------------------------------------------------------------------------------

AUDIT_PAGE = 100


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, session: SignedIn, action: Annotated[str, Query(max_length=64)] = "",
               before: Annotated[int | None, Query(ge=1)] = None) -> HTMLResponse:
    _only(session, PersonRole.ADMIN, who="the programme's admins")
    chosen = action if action in ACTION_WORDS else None
    found = audit.rows(_services(request), session.person.principal(), action=chosen, before=before,
                       limit=AUDIT_PAGE + 1)
    more, found = len(found) > AUDIT_PAGE, found[:AUDIT_PAGE]
    rows = [{"at": f"{day(r.at)} {r.at:%H:%M}", "what": ACTION_WORDS.get(r.action, r.action), "actor": r.actor,
             "subject": r.subject, "detail": ", ".join(f"{k}: {v}" for k, v in sorted(r.detail.items()))}
            for r in found]
    return _page(request, "corrections/audit.html", title="Audit log", session=session, rows=rows,
                 actions=ACTION_WORDS, action=chosen or "", next_before=found[-1].id if more else None)


@router.get("/audit.csv", response_class=Response)
def audit_download(request: Request, session: SignedIn,
                   action: Annotated[str, Query(max_length=64)] = "") -> Response:
    _only(session, PersonRole.ADMIN, who="the programme's admins")
    found = audit.rows(_services(request), session.person.principal(),
                       action=action if action in ACTION_WORDS else None, limit=None)
    return Response(audit.as_csv(found), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="timecredits-audit.csv"'})
