"""The partner's front desk (docs/design.md §8.3): its opportunities (list, create, edit; one-off or a series of
sessions, §5.13) and its open bookings (attended, cancelled, or did not come). A front desk acts as its
organisation, `org:{id}`, through the same service functions as `POST /v1/opportunities`,
`PATCH /v1/opportunities/{id}` and `POST /v1/bookings/{id}/attend|cancel|no-show`."""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from api.deps import Services
from api.errors import ApiError
from api.services import bookings, opportunities
from ledger.pg import schema
from ledger.series import FEWEST_SESSIONS, INTERVALS, MOST_SESSIONS, Repeat, check_repeat
from web.app import (
    LONDON,
    PREFIX,
    CsrfToken,
    SignedIn,
    _check_csrf,
    _credits_typed,
    _message,
    _only,
    _page,
    _services,
    _wait_outcome,
)
from web.people import Person, PersonRole, Session
from web.series import grouped
from web.words import credits, refusal

router = APIRouter(prefix=PREFIX, include_in_schema=False)
DESK = "a partner's front desk"
AREA = re.compile(r"^[EWSN][0-9]{8}$")
#: "Does it repeat?": the form's answers and their words, "no" and the repeats a series may take (§5.13).
REPEATS = {"no": "No, it happens once", **{every: f"Yes, every {every}" for every in INTERVALS}}


def _desk(session: Session) -> tuple[Person, str]:
    """The front desk and the partner it acts as, or the 403 page for anyone else."""
    person = _only(session, PersonRole.FRONT_DESK, who=DESK)
    assert person.org_id is not None
    return person, person.org_id


def when(starts_at: datetime | None) -> str:
    """A start as people read it, in London time: 'Saturday 5 December 2026, 10:30'."""
    if starts_at is None:
        return "No date"
    local = starts_at.astimezone(LONDON)
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M}"


def _not_yours(request: Request, session: Session) -> HTMLResponse:
    return _message(request, "You cannot change this", ["It belongs to another organisation."], status_code=403,
                    session=session, link=(f"{PREFIX}/listings", "Back to your opportunities"))


def _no_such(request: Request, session: Session) -> HTMLResponse:
    return _message(request, "No such opportunity", ["It may have been removed."], status_code=404,
                    session=session, link=(f"{PREFIX}/listings", "Back to your opportunities"))


# --- opportunities -----------------------------------------------------------------------------------------------


def _places_left(request: Request, rows: list[Any]) -> dict[str, str]:
    """Each session's places left in words: its capacity less open bookings and live waiting-list offers, as the
    worker counts them (docs/design.md §5.8)."""
    limited = [r.id for r in rows if r.capacity is not None]
    taken = bookings.open_counts(_services(request), limited)
    w = schema.waitlist
    with _services(request).engine.connect() as conn:
        offered = dict(conn.execute(select(w.c.opportunity_id, func.count()).where(
            w.c.opportunity_id.in_(limited), w.c.offered_until > func.now()).group_by(w.c.opportunity_id)).all())
    words = {}
    for r in rows:
        left = None if r.capacity is None else max(0, r.capacity - taken.get(r.id, 0) - offered.get(r.id, 0))
        words[r.id] = ("No limit" if left is None else "No places left" if left == 0 else
                       f"{left} of {r.capacity} left")
    return words


def _listed(request: Request, session: Session, outcome: str | None = None) -> HTMLResponse:
    _, org_id = _desk(session)
    rows = opportunities.of_partner(_services(request), org_id)
    left = _places_left(request, [r for r in rows if r.series_id is not None])

    def shown(r: Any) -> dict[str, Any]:
        return {"id": r.id, "title": r.title, "when": when(r.starts_at), "cost": credits(r.cost),
                "places": "No limit" if r.capacity is None else str(r.capacity), "left": left.get(r.id, ""),
                "category": opportunities.CATEGORIES.get(r.category, r.category)}

    listed = [{**shown(line.first), "sessions": [shown(r) for r in line.sessions]}
              for line in grouped(rows, lambda r: r.series_id)]
    return _page(request, "partner/opportunities.html", title="Your opportunities", session=session,
                 listed=listed, outcome=outcome)


@router.get("/listings", response_class=HTMLResponse)
def opportunities_page(request: Request, session: SignedIn) -> HTMLResponse:
    return _listed(request, session)


def _partner_area(request: Request, org_id: str) -> str:
    o = schema.organisations
    with _services(request).engine.connect() as conn:
        return conn.execute(select(o.c.area).where(o.c.id == org_id)).scalar_one_or_none() or ""


def _start(day: str, clock: str, errors: dict[str, str]) -> datetime | None:
    """The start a person typed (a date and a time, London time), in UTC; both empty is no date."""
    day, clock = day.strip(), clock.strip()
    if not day and not clock:
        return None
    try:
        parsed_day = date.fromisoformat(day)
    except ValueError:
        errors["start_date"] = "Enter the date it starts, like 2027-03-21"
        return None
    try:
        parsed_time = time.fromisoformat(clock)
    except ValueError:
        errors["start_time"] = "Enter the time it starts, like 10:30"
        return None
    start = datetime.combine(parsed_day, parsed_time, LONDON).astimezone(UTC)
    if start <= datetime.now(UTC):
        errors["start_date"] = "The start must be in the future"
        return None
    return start


def _capacity(text: str, errors: dict[str, str]) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        errors["capacity"] = "Enter the number of places as a whole number from 1 to 100000, or leave it empty"
        return None
    return int(text)


def _title(text: str, errors: dict[str, str]) -> str:
    text = " ".join(text.split())
    if not text:
        errors["title"] = "Enter a title"
    elif len(text) > 200:
        errors["title"] = "The title must be 200 characters or fewer"
    return text


def _repeat(repeat: str, sessions: str, starts_at: datetime | None, errors: dict[str, str]) -> Repeat | None:
    """The series a person asked for, or None for a one-off; its errors in words (docs/design.md §5.13)."""
    if repeat not in REPEATS:
        errors["repeat"] = "Choose whether it repeats"
        return None
    if repeat == "no":
        return None
    try:
        asked = Repeat(repeat, int(sessions.strip()))
        check_repeat(asked)
    except ValueError:  # not a whole number, or a count the rule refuses (SeriesRefused)
        errors["sessions"] = (f"Enter how many sessions there are, a whole number from {FEWEST_SESSIONS} to "
                              f"{MOST_SESSIONS}")
        return None
    if starts_at is None and "start_date" not in errors and "start_time" not in errors:
        errors["start_date"] = "Enter the date and time the first session starts"
    return asked


def _form_values(form: dict[str, str], starts_at: datetime | None) -> dict[str, str]:
    if starts_at is not None:
        local = starts_at.astimezone(LONDON)
        form = {**form, "start_date": local.date().isoformat(), "start_time": local.strftime("%H:%M")}
    return form


@router.get("/listings/new", response_class=HTMLResponse)
def new_opportunity_page(request: Request, session: SignedIn) -> HTMLResponse:
    _, org_id = _desk(session)
    return _page(request, "partner/opportunity_form.html", title="List an opportunity", session=session,
                 categories=opportunities.CATEGORIES, form={"area": _partner_area(request, org_id), "repeat": "no"},
                 action=f"{PREFIX}/listings/new", new=True, repeats=REPEATS)


@router.post("/listings/new", response_class=HTMLResponse)
def create_opportunity(request: Request, session: SignedIn, csrf_token: CsrfToken = "",
                       title: Annotated[str, Form()] = "", category: Annotated[str, Form()] = "",
                       cost: Annotated[str, Form()] = "", capacity: Annotated[str, Form()] = "",
                       area: Annotated[str, Form()] = "", start_date: Annotated[str, Form()] = "",
                       start_time: Annotated[str, Form()] = "", repeat: Annotated[str, Form()] = "no",
                       sessions: Annotated[str, Form()] = "") -> Any:
    _check_csrf(session, csrf_token)
    person, org_id = _desk(session)
    form = {"title": title, "category": category, "cost": cost, "capacity": capacity, "area": area,
            "start_date": start_date, "start_time": start_time, "repeat": repeat, "sessions": sessions}
    errors: dict[str, str] = {}
    clean_title = _title(title, errors)
    if category not in opportunities.CATEGORIES:
        errors["category"] = "Choose what kind of opportunity it is"
    value = _credits_typed(cost)
    if value is None:
        errors["cost"] = "Enter what it costs in credits, like 2 or 1.50"
    places = _capacity(capacity, errors)
    if not AREA.match(area.strip().upper()):
        errors["area"] = "Enter an area code of 9 characters, like E09000030"
    starts_at = _start(start_date, start_time, errors)
    series = _repeat(repeat, sessions, starts_at, errors)

    def again(status: int, errors_: dict[str, str]) -> HTMLResponse:
        return _page(request, "partner/opportunity_form.html", status, title="List an opportunity", session=session,
                     categories=opportunities.CATEGORIES, form=form, errors=errors_,
                     action=f"{PREFIX}/listings/new", new=True, repeats=REPEATS)

    if errors:
        return again(422, errors)
    assert value is not None
    listing = opportunities.Listing(title=clean_title, category=category, cost=value, capacity=places,
                                    area=area.strip().upper(), starts_at=starts_at)
    try:
        if series is None:
            opportunities.create(_services(request), person.principal(), listing)
        else:
            opportunities.create_series(_services(request), person.principal(), listing, series)
    except ApiError as refused:
        return again(422, {"title": refusal(refused.code).capitalize()})
    if series is None:
        return _listed(request, session, f"Listed: {clean_title}.")
    return _listed(request, session, f"Listed: {clean_title}, {series.sessions} sessions "
                                     f"{REPEATS[series.every].removeprefix('Yes, ')} from {when(starts_at)}.")


@router.get("/listings/{opportunity_id}/edit", response_class=HTMLResponse)
def edit_opportunity_page(request: Request, opportunity_id: str, session: SignedIn) -> HTMLResponse:
    _, org_id = _desk(session)
    row = opportunities.one(_services(request), opportunity_id)
    if row is None:
        return _no_such(request, session)
    if row.partner_id != org_id:
        return _not_yours(request, session)
    form = _form_values({"title": row.title, "capacity": "" if row.capacity is None else str(row.capacity)},
                        row.starts_at)
    return _page(request, "partner/opportunity_form.html", title="Change an opportunity", session=session, form=form,
                 action=f"{PREFIX}/listings/{opportunity_id}/edit", new=False, fixed=_fixed(row))


def _fixed(row: Any) -> list[tuple[str, str]]:
    """What an edit keeps: shown, not changed."""
    return [("Kind", opportunities.CATEGORIES.get(row.category, row.category)), ("Cost", credits(row.cost)),
            ("Area", row.area)]


@router.post("/listings/{opportunity_id}/edit", response_class=HTMLResponse)
def edit_opportunity(request: Request, opportunity_id: str, session: SignedIn, csrf_token: CsrfToken = "",
                     title: Annotated[str, Form()] = "", capacity: Annotated[str, Form()] = "",
                     start_date: Annotated[str, Form()] = "", start_time: Annotated[str, Form()] = "") -> Any:
    _check_csrf(session, csrf_token)
    person, org_id = _desk(session)
    services = _services(request)
    row = opportunities.one(services, opportunity_id)
    if row is None:
        return _no_such(request, session)
    if row.partner_id != org_id:
        return _not_yours(request, session)
    form = {"title": title, "capacity": capacity, "start_date": start_date, "start_time": start_time}
    errors: dict[str, str] = {}
    changes = {"title": _title(title, errors), "capacity": _capacity(capacity, errors),
               "starts_at": _start(start_date, start_time, errors)}

    def again(status: int, errors_: dict[str, str]) -> HTMLResponse:
        return _page(request, "partner/opportunity_form.html", status, title="Change an opportunity",
                     session=session, form=form, errors=errors_, fixed=_fixed(row),
                     action=f"{PREFIX}/listings/{opportunity_id}/edit", new=False)

    if errors:
        return again(422, errors)
    try:
        opportunities.edit(services, person.principal(), opportunity_id, changes)
    except ApiError as refused:
        if refused.status == 403:
            return _not_yours(request, session)
        return again(422, {"title": refusal(refused.code).capitalize()})
    return _listed(request, session, f"Changed: {changes['title']}.")


# --- bookings ----------------------------------------------------------------------------------------------------


def _bookings_page(request: Request, session: Session, outcome: str | None = None, refused: bool = False,
                   status_code: int = 200) -> HTMLResponse:
    _, org_id = _desk(session)
    rows = bookings.open_of_partner(_services(request), org_id)
    listed = [{"id": b.event_id, "volunteer": b.volunteer_id, "title": b.title, "when": when(b.starts_at),
               "held": credits(b.held)} for b in rows]
    no_show = ("If someone did not come, the credits come to you as if they had."
               if _services(request).no_show_forfeit else
               "If someone did not come, the credits go back to them.")
    return _page(request, "partner/bookings.html", status_code, title="Open bookings", session=session,
                 listed=listed, outcome=outcome, refused=refused, no_show=no_show, partner_id=org_id)


@router.get("/open-bookings", response_class=HTMLResponse)
def bookings_page(request: Request, session: SignedIn) -> HTMLResponse:
    return _bookings_page(request, session)


#: What the desk says of a booking: the service function that settles it, and what the page then says happened.
_SETTLEMENTS = {
    "attend": (bookings.attend, "Marked attended: volunteer {volunteer} paid {amount}."),
    "cancel": (bookings.cancel, "Cancelled: volunteer {volunteer} has {amount} back."),
}


def _no_show_words(services: Services) -> str:
    """What a no-show does, as the programme's setting says (docs/design.md §5.11)."""
    if services.no_show_forfeit:
        return "Marked as did not come: volunteer {volunteer} paid {amount}, as if they had come."
    return "Marked as did not come: volunteer {volunteer} has {amount} back."


def _settle(request: Request, session: Session, event_id: UUID, how: str) -> HTMLResponse:
    person, org_id = _desk(session)
    services = _services(request)
    if how == "no-show":
        settle, words = bookings.no_show, _no_show_words(services)
    else:
        settle, words = _SETTLEMENTS[how]
    try:
        found = bookings.booking(services, event_id)
        held = next((b.held for b in bookings.open_of_partner(services, org_id)
                     if b.event_id == event_id), None)
        settled = settle(services, person.principal(), event_id)
    except ApiError as refused:
        if refused.status == 403:
            return _message(request, "You cannot change this booking", ["It belongs to another organisation."],
                            status_code=403, session=session, link=(f"{PREFIX}/open-bookings", "Back to your bookings"))
        return _bookings_page(request, session, f"Nothing was changed: {refusal(refused.code)}.", True, 422)
    status, reason = _wait_outcome(services, settled)
    amount = credits(held) if held is not None else "the held credits"
    if status == "applied":
        outcome = words.format(volunteer=found.volunteer_id, amount=amount)
    elif status == "rejected":
        return _bookings_page(request, session, f"Nothing was changed: {refusal(reason or '')}.", True)
    else:
        outcome = "Sent: it will show here in a moment."
    return _bookings_page(request, session, outcome)


@router.post("/open-bookings/{event_id}/attend", response_class=HTMLResponse)
def attend(request: Request, event_id: UUID, session: SignedIn, csrf_token: CsrfToken = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    return _settle(request, session, event_id, "attend")


@router.post("/open-bookings/{event_id}/cancel", response_class=HTMLResponse)
def cancel(request: Request, event_id: UUID, session: SignedIn, csrf_token: CsrfToken = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    return _settle(request, session, event_id, "cancel")


@router.post("/open-bookings/{event_id}/no-show", response_class=HTMLResponse)
def no_show(request: Request, event_id: UUID, session: SignedIn, csrf_token: CsrfToken = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    return _settle(request, session, event_id, "no-show")
