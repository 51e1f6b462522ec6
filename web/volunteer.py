"""The volunteer's door (docs/design.md §8.3): what is held and for what, the statement in words, opportunities
near them to book and cancel, and their hours with what became of them.

Every read is of the signed-in volunteer's own account, never an id from the URL or a form; a booking is
cancelled through the same rule as the API's (`api.services.bookings.cancel`), so another's is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from api.deps import Services
from api.errors import ApiError
from api.services import accounts, bookings, corrections, spending, waitlist
from ledger.accounts import volunteer_account
from ledger.domain import EntryKind
from ledger.pg import notes, schema
from ledger.pg.registry import places_taken
from web.app import (LONDON, PREFIX, CsrfToken, SignedIn, _check_csrf, _credits_typed, _message, _only, _page,
                     _services, _wait_outcome)
from web.people import Person, PersonRole, Session
from web.series import grouped
from web.words import credits, not_booked, refusal

router = APIRouter(prefix=PREFIX, include_in_schema=False)
WHO = "volunteers"
STATEMENT_PAGE = 20
CATEGORIES = {"course": "Course", "training": "Training", "culture": "Culture", "sport": "Sport",
              "work_experience": "Work experience", "other": "Other"}


def _volunteer(session: Session) -> tuple[Person, str]:
    person = _only(session, PersonRole.VOLUNTEER, who=WHO)
    assert person.volunteer_id is not None
    return person, person.volunteer_id


def when(moment: datetime | None) -> str:
    """'Saturday 5 December at 10:00', in London time; 'any time' for an opportunity without a start."""
    if moment is None:
        return "any time"
    local = moment.astimezone(LONDON)
    return f"{local:%A} {local.day} {local:%B} at {local:%H:%M}"


def day(moment: datetime) -> str:
    local = moment.astimezone(LONDON)
    return f"{local.day} {local:%B %Y}"


def duration(minutes: int) -> str:
    """'3 hours', '1 hour 30 minutes', '45 minutes'."""
    hours, rest = divmod(minutes, 60)
    parts = ([f"{hours} hour{'' if hours == 1 else 's'}"] if hours else []) + (
        [f"{rest} minute{'' if rest == 1 else 's'}"] if rest else [])
    return " ".join(parts)


def _are(amount: int) -> str:
    return "is" if amount == 100 else "are"


def held_sentences(services: Services, volunteer_id: str) -> list[str]:
    """One sentence an open booking: '2 credits are held for Swim at York Hall, Saturday 5 December at 10:00'."""
    return [f"{credits(b.held)} {_are(b.held)} held for {b.title} at {b.partner_name}, "
            f"{when(b.starts_at)}." for b in bookings.open_bookings(services, volunteer_id)]


# --- the statement -------------------------------------------------------------------------------------------


def _line_words(kind: EntryKind, amount: int, org: str | None, title: str | None) -> str:
    value = credits(abs(amount))
    at = f" at {org}" if org else ""
    if kind is EntryKind.HOURS_APPROVED:
        return f"Earned {value} for hours{at}"
    if kind is EntryKind.OPPORTUNITY_BOOKED:
        return f"Held {value} for {title}{at}" if title else f"Held {value} for a booking{at}"
    if kind is EntryKind.BOOKING_CANCELLED:
        return f"{value.capitalize()} back: {title or 'a booking'} was cancelled"
    if kind is EntryKind.BOOKING_EXPIRED:
        return f"{value.capitalize()} back. Booking released: {title or 'a booking'} was not attended in time"
    if kind is EntryKind.BOOKING_NO_SHOW:
        return f"{value.capitalize()} back. Did not come to {title or 'a booking'}{at}"
    if kind in (EntryKind.CREDITS_REDEEMED, EntryKind.BOOKING_ATTENDED):
        return f"Paid {value}{at}" + (f" for {title}" if title else "")
    if kind is EntryKind.CREDITS_GIFTED:
        return f"Gave {value} as a gift" if amount < 0 else f"Received {value} as a gift"
    return f"Correction: {value} {'taken off' if amount < 0 else 'added back'}"


def _statement_words(services: Services, lines: list[Any]) -> list[tuple[str, str, str]]:
    """(when, what, signed amount) a line, naming the organisation and opportunity of each entry."""
    e, o, op = schema.entries, schema.organisations, schema.opportunities
    ids = [line.entry_id for line in lines]
    with services.engine.connect() as conn:
        about = {row[0]: (row[1], row[2]) for row in conn.execute(
            select(e.c.id, o.c.name, op.c.title).outerjoin(o, o.c.id == e.c.org_id)
            .outerjoin(op, op.c.id == e.c.opportunity_id).where(e.c.id.in_(ids)))} if ids else {}
    why = corrections.reasons(services, [line.event_id for line in lines if line.kind is EntryKind.ENTRY_REVERSED])
    words = []
    for line in lines:
        org, title = about.get(line.entry_id, (None, None))
        sign = "+" if line.amount > 0 else "−"
        what = _line_words(line.kind, line.amount, org, title)
        if line.event_id in why:  # the reason in the words of who corrected it (docs/design.md §5.14)
            what += f". Why: {why[line.event_id].reason}"
        words.append((day(line.occurred_at), what, f"{sign}{credits(abs(line.amount))}"))
    return words


@router.get("/statement", response_class=HTMLResponse)
def statement_page(request: Request, session: SignedIn,
                   before: Annotated[int | None, Query(ge=1)] = None) -> HTMLResponse:
    person, volunteer_id = _volunteer(session)
    services = _services(request)
    lines, next_before = accounts.statement(services, person.principal(), volunteer_id, STATEMENT_PAGE, before)
    return _page(request, "volunteer/statement.html", title="Your statement", session=session,
                 lines=_statement_words(services, lines), next_before=next_before, first_page=before is None)


# --- opportunities near them --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shown:
    id: str
    title: str
    partner_name: str
    category: str
    when: str
    cost: str
    places: str
    full: bool
    booking_event_id: UUID | None
    #: Their place on the waiting list (1 is next) while it is full for them; None when not waiting.
    waiting: int | None = None
    #: Until when a place is held for them, in words; None without an offer.
    offered_until: str | None = None
    #: The series it is a session of (docs/design.md §5.13); None for a one-off.
    series_id: str | None = None


def _areas(services: Services, own: str) -> list[tuple[str, str]]:
    a, op = schema.areas, schema.opportunities
    with services.engine.connect() as conn:
        codes = {own, *conn.execute(select(op.c.area).distinct()).scalars()}
        named = conn.execute(select(a.c.code, a.c.name).where(a.c.code.in_(codes))).all()
    names: dict[str, str] = {row[0]: row[1] for row in named}
    return sorted(((code, names.get(code, code)) for code in codes), key=lambda pair: (pair[0] != own, pair[1]))


def _opportunities(services: Services, volunteer_id: str, area: str, category: str, on: date | None) -> list[Shown]:
    op, o = schema.opportunities, schema.organisations
    query = (select(op.c.id, op.c.title, o.c.name, op.c.category, op.c.starts_at, op.c.cost, op.c.capacity,
                    op.c.series_id)
             .join(o, o.c.id == op.c.partner_id).where(op.c.area == area)
             .order_by(op.c.starts_at.nulls_last(), op.c.title).limit(100))
    if category:
        query = query.where(op.c.category == category)
    if on is not None:
        start = datetime.combine(on, time(0), LONDON)
        query = query.where(op.c.starts_at >= start, op.c.starts_at < start + timedelta(days=1))
    else:  # what is still to come, and what has no start
        query = query.where((op.c.starts_at.is_(None)) | (op.c.starts_at >= datetime.now(LONDON)))
    with services.engine.connect() as conn:
        rows = conn.execute(query).all()
    taken = bookings.open_counts(services, [row.id for row in rows])
    mine = {b.opportunity_id: b.event_id for b in bookings.open_bookings(services, volunteer_id)}
    waiting = {w.opportunity_id: w for w in waitlist.places(services, volunteer_id)}
    now = datetime.now(UTC)
    with services.engine.connect() as conn:
        # Places held for others count as taken, as the worker counts them (docs/design.md §5.8).
        held = {row.id: places_taken(conn, row.id, volunteer_id, now) - taken.get(row.id, 0)
                for row in rows if row.capacity is not None}
    shown = []
    for row in rows:
        left = None if row.capacity is None else max(0, row.capacity - taken.get(row.id, 0) - held.get(row.id, 0))
        place = waiting.get(row.id)
        places = ("Open to everyone" if left is None else "No places left" if left == 0 else
                  f"{left} place{'' if left == 1 else 's'} left")
        shown.append(Shown(row.id, row.title, row.name, CATEGORIES.get(row.category, row.category), when(row.starts_at),
                           credits(row.cost), places, left == 0, mine.get(row.id),
                           place.position if place else None,
                           when(place.offered_until) if place and place.offered_until else None, row.series_id))
    return shown


def offer_sentences(services: Services, volunteer_id: str) -> list[str]:
    """'A place on Swim session is held for you until Thursday 3 December at 19:00: book it before then.'"""
    held = [w for w in waitlist.places(services, volunteer_id) if w.offered_until is not None]
    if not held:
        return []
    op = schema.opportunities
    with services.engine.connect() as conn:
        titles = {row.id: row.title for row in conn.execute(
            select(op.c.id, op.c.title).where(op.c.id.in_([w.opportunity_id for w in held])))}
    return [f"A place on {titles.get(w.opportunity_id, w.opportunity_id)} is held for you until "
            f"{when(w.offered_until)}: book it before then." for w in held]


def _waitlist_outcome(request: Request, session: Session, title: str, joined: bool,
                      refused: ApiError | None, position: int | None = None) -> HTMLResponse:
    if refused is not None:
        return _outcome(request, session, "Waiting list not changed", f"Not changed: {refusal(refused.code)}.", True)
    if joined:
        return _outcome(request, session, "On the waiting list", f"You are number {position} on the waiting list "
                        f"for {title}. When a place is free it is held for you, and shows on your home page.", False)
    return _outcome(request, session, "Off the waiting list", f"You have left the waiting list for {title}.", False)


@router.post("/opportunities/{opportunity_id}/waitlist", response_class=HTMLResponse)
def join_waitlist(request: Request, opportunity_id: str, session: SignedIn, csrf_token: CsrfToken = "") -> HTMLResponse:
    """The same rule as `POST /v1/opportunities/{id}/waitlist` (api.services.waitlist)."""
    _check_csrf(session, csrf_token)
    person, _ = _volunteer(session)
    services = _services(request)
    title = _title(services, opportunity_id)
    try:
        place, _ = waitlist.join(services, person.principal(), opportunity_id)
    except ApiError as refused:
        return _waitlist_outcome(request, session, title, True, refused)
    return _waitlist_outcome(request, session, title, True, None, place.position)


@router.post("/opportunities/{opportunity_id}/waitlist/leave", response_class=HTMLResponse)
def leave_waitlist(request: Request, opportunity_id: str, session: SignedIn,
                   csrf_token: CsrfToken = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    person, _ = _volunteer(session)
    services = _services(request)
    title = _title(services, opportunity_id)
    try:
        waitlist.leave(services, person.principal(), opportunity_id)
    except ApiError as refused:
        return _waitlist_outcome(request, session, title, False, refused)
    return _waitlist_outcome(request, session, title, False, None)


def _title(services: Services, opportunity_id: str) -> str:
    op = schema.opportunities
    with services.engine.connect() as conn:
        return conn.execute(select(op.c.title).where(op.c.id == opportunity_id)).scalar() or "that opportunity"


@router.get("/opportunities", response_class=HTMLResponse)
def opportunities_page(request: Request, session: SignedIn, area: str = "", category: str = "",
                       on: Annotated[str, Query(alias="date")] = "") -> HTMLResponse:
    _, volunteer_id = _volunteer(session)
    services = _services(request)
    with services.engine.connect() as conn:
        own = conn.execute(select(schema.volunteers.c.area).where(schema.volunteers.c.id == volunteer_id)).scalar_one()
    errors: dict[str, str] = {}
    areas = _areas(services, own)
    if area not in dict(areas):
        area = own
    if category not in CATEGORIES:
        category = ""
    day_wanted: date | None = None
    if on.strip():
        try:
            day_wanted = date.fromisoformat(on.strip())
        except ValueError:
            errors["date"] = "Enter a date like 2026-12-05, or leave it empty for every date to come"
    found = [] if errors else _opportunities(services, volunteer_id, area, category, day_wanted)
    return _page(request, "volunteer/opportunities.html", 422 if errors else 200, title="Opportunities near you",
                 session=session, errors=errors, areas=areas, area=area, categories=CATEGORIES, category=category,
                 date=on, opportunities=grouped(found, lambda o: o.series_id))


def _outcome(request: Request, session: Session, title: str, outcome: str, refused: bool) -> HTMLResponse:
    return _page(request, "volunteer/outcome.html", title=title, session=session, outcome=outcome, refused=refused)


@router.post("/opportunities/{opportunity_id}/book", response_class=HTMLResponse)
def book(request: Request, opportunity_id: str, session: SignedIn, csrf_token: CsrfToken = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    person, _ = _volunteer(session)
    services = _services(request)
    op = schema.opportunities
    with services.engine.connect() as conn:
        found = conn.execute(select(op.c.title, op.c.cost).where(op.c.id == opportunity_id)).first()
    if found is None:
        return _message(request, "No such opportunity", ["It may have been taken down."], status_code=404,
                        session=session, link=(f"{PREFIX}/opportunities", "See opportunities near you"))
    try:
        event_id = spending.book(services, person.principal(), opportunity_id)
    except ApiError as refused:
        return _outcome(request, session, "Not booked", not_booked(refused.code, found.title), True)
    status, reason = _wait_outcome(services, event_id)
    if status == "applied":
        return _outcome(request, session, "Booked", f"Booked: {credits(found.cost)} {_are(found.cost)} held for "
                        f"{found.title}. Cancel before it starts and they come back to you.", False)
    if status == "rejected":
        return _outcome(request, session, "Not booked", not_booked(reason or "", found.title), True)
    return _outcome(request, session, "Booking sent", "Sent: your booking will show on your home page in a moment.",
                    False)


@router.post("/bookings/{event_id}/cancel", response_class=HTMLResponse)
def cancel(request: Request, event_id: UUID, session: SignedIn, csrf_token: CsrfToken = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    person, volunteer_id = _volunteer(session)
    services = _services(request)
    held = {b.event_id: b for b in bookings.open_bookings(services, volunteer_id)}.get(event_id)
    try:
        cancelled = bookings.cancel(services, person.principal(), event_id)
    except ApiError as refused:
        if refused.status == 404:
            return _message(request, "No such booking", ["It may have been cancelled already."], status_code=404,
                            session=session, link=(f"{PREFIX}/opportunities", "See opportunities near you"))
        return _message(request, "You cannot cancel this booking", ["You can cancel your own bookings only."],
                        status_code=403, session=session, link=(PREFIX, "Go to your home page"))
    status, reason = _wait_outcome(services, cancelled)
    if status == "applied":
        back = f"{credits(held.held)} for {held.title} {_are(held.held)}" if held else "Your credits are"
        return _outcome(request, session, "Booking cancelled", f"Cancelled: {back} back to spend.", False)
    if status == "rejected":
        return _outcome(request, session, "Not cancelled", f"Not cancelled: {refusal(reason or '')}.", True)
    return _outcome(request, session, "Cancellation sent", "Sent: your credits will be back in a moment.", False)


# --- their hours ---------------------------------------------------------------------------------------------


@router.get("/hours", response_class=HTMLResponse)
def hours_page(request: Request, session: SignedIn) -> HTMLResponse:
    _, volunteer_id = _volunteer(session)
    services = _services(request)
    logs, decisions, o, p = schema.hours_logs, schema.hours_decisions, schema.organisations, schema.postings
    query = (select(logs.c.worked_on, logs.c.minutes, notes.activity_of(logs.c.event_id).label("activity"), o.c.name,
                    decisions.c.decision, notes.rejection_reason_of(decisions.c.decision_event_id).label("reason"),
                    p.c.amount)
             .join(o, o.c.id == logs.c.org_id)
             .outerjoin(decisions, decisions.c.log_event_id == logs.c.event_id)
             .outerjoin(p, (p.c.entry_id == decisions.c.entry_id)
                        & (p.c.account_key == volunteer_account(volunteer_id)))
             .where(logs.c.volunteer_id == volunteer_id)
             .order_by(logs.c.worked_on.desc(), logs.c.logged_at.desc()).limit(200))
    with services.engine.connect() as conn:
        rows = conn.execute(query).all()
    shown = []
    for row in rows:
        if row.decision is None:
            status, refused = "Waiting for approval", False
        elif row.decision == "approved":
            status, refused = "Approved" + (f": earned {credits(row.amount)}" if row.amount else ""), False
        else:
            status, refused = "Not approved: " + (row.reason.strip() or "no reason was given"), True
        shown.append({"day": f"{row.worked_on.day} {row.worked_on:%B %Y}", "what": f"{duration(row.minutes)} of "
                      f"{row.activity} at {row.name}", "status": status, "refused": refused})
    return _page(request, "volunteer/hours.html", title="Your hours", session=session, hours=shown)


# --- gifts by card number ---------------------------------------------------------------------------------------


def card_number(typed: str) -> str | None:
    """The volunteer id printed on a sign-in card as its number ("v-2957f17abc4b", spaces and case ignored)."""
    text = "".join(typed.split()).lower()
    if not text.startswith("v-"):
        text = "v-" + text
    return text if len(text) == 14 and all(ch in "0123456789abcdef" for ch in text[2:]) else None


@router.get("/gift", response_class=HTMLResponse)
def gift_page(request: Request, session: SignedIn) -> HTMLResponse:
    _only(session, PersonRole.VOLUNTEER, who=WHO)
    return _page(request, "volunteer/gift.html", title="Give credits", session=session)


@router.post("/gift", response_class=HTMLResponse)
def give(request: Request, session: SignedIn, csrf_token: CsrfToken = "", card: Annotated[str, Form()] = "",
         amount: Annotated[str, Form()] = "") -> HTMLResponse:
    """A gift is the volunteer's own act, through the rule `POST /v1/gifts` applies (docs/design.md §5.6)."""
    _check_csrf(session, csrf_token)
    person = _only(session, PersonRole.VOLUNTEER, who=WHO)
    errors: dict[str, str] = {}
    to = card_number(card)
    if to is None:
        errors["card"] = "Enter the card number, like v-2957f17abc4b"
    value = _credits_typed(amount)
    if value is None:
        errors["amount"] = "Enter an amount of credits, like 2 or 1.50"
    if not errors:
        assert to is not None and value is not None
        try:
            event_id = spending.gift(_services(request), person.principal(), to, value)
        except ApiError as refused:
            field = "amount" if refused.code == "invalid_amount" else "card"
            words = {"self_gift": "That is your own card number", "unknown_volunteer":
                     "There is no volunteer with that card number"}.get(refused.code, refusal(refused.code))
            errors[field] = words[0].upper() + words[1:]
    if errors:
        return _page(request, "volunteer/gift.html", 422, title="Give credits", session=session, errors=errors,
                     card=card, amount=amount)
    status, reason = _wait_outcome(_services(request), event_id)
    assert value is not None
    outcome = {"applied": f"Given: {credits(value)}.",
               "rejected": f"Not given: {refusal(reason or '')}."}.get(status, "Sent: it will show in a moment.")
    return _page(request, "volunteer/gift.html", title="Give credits", session=session, outcome=outcome,
                 refused=status == "rejected")
