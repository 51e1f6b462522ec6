"""The admin's erasure of a volunteer's personal data (docs/design.md §5.15, §8.3): a confirmation page that says
what goes and what stays, then `api.services.erasure.erase`, what `DELETE /v1/volunteers/{id}` calls."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from api.errors import ApiError
from api.models import Id
from api.services import erasure
from ledger.pg import schema
from web.app import PREFIX, CsrfToken, SignedIn, _check_csrf, _message, _only, _page, _services
from web.people import PersonRole, Session

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _name_of(request: Request, volunteer_id: str) -> tuple[bool, str | None, str | None] | None:
    """(erased already, name, e-mail) of a registered volunteer; None for nobody."""
    v, pr, p = schema.volunteers, schema.volunteer_profiles, schema.people
    with _services(request).engine.connect() as conn:
        row = conn.execute(select(v.c.erased_at, pr.c.display_name, pr.c.email, p.c.display_name.label("person"),
                                  p.c.email.label("person_email"))
                           .outerjoin(pr, pr.c.volunteer_id == v.c.id).outerjoin(p, p.c.volunteer_id == v.c.id)
                           .where(v.c.id == volunteer_id)).first()
    if row is None:
        return None
    return row.erased_at is not None, row.display_name or row.person, row.email or row.person_email


def _nobody(request: Request, session: Session, volunteer_id: str) -> HTMLResponse:
    return _message(request, "There is no such volunteer", [f"No volunteer has the id {volunteer_id}."], 404,
                    session=session, link=(f"{PREFIX}/people", "Back to people who sign in"))


def _gone(request: Request, session: Session, volunteer_id: str) -> HTMLResponse:
    return _message(request, "Their personal data is already erased",
                    [f"Volunteer {volunteer_id} was erased before. Nothing more is held that names them."], 410,
                    session=session, link=(f"{PREFIX}/people", "Back to people who sign in"))


@router.get("/volunteers/{volunteer_id}/erase", response_class=HTMLResponse)
def erase_page(request: Request, volunteer_id: Id, session: SignedIn) -> HTMLResponse:
    _only(session, PersonRole.ADMIN, who="admins")
    found = _name_of(request, volunteer_id)
    if found is None:
        return _nobody(request, session, volunteer_id)
    erased, name, email = found
    if erased:
        return _gone(request, session, volunteer_id)
    who = f"{name}'s" if name else f"volunteer {volunteer_id}'s"
    return _page(request, "admin/erase.html", title=f"Erase {who} personal data?", session=session,
                 volunteer_id=volunteer_id, summary=[("Volunteer id", volunteer_id), ("Name", name or "Not held"),
                                                     ("E-mail address", email or "Not held")],
                 deleted=list(erasure.DELETED.values()), kept=erasure.KEPT)


@router.post("/volunteers/{volunteer_id}/erase", response_class=HTMLResponse)
def erase(request: Request, volunteer_id: Id, session: SignedIn, csrf_token: CsrfToken = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    _only(session, PersonRole.ADMIN, who="admins")
    found = _name_of(request, volunteer_id)
    try:
        erasure.erase(_services(request).engine, session.person.principal(), volunteer_id)
    except ApiError as refused:
        if refused.code == "unknown_volunteer":
            return _nobody(request, session, volunteer_id)
        if refused.code == "volunteer_erased":
            return _gone(request, session, volunteer_id)
        raise
    _services(request).principals.clear()
    name = found[1] if found else None
    return _page(request, "admin/erased.html", title="Personal data erased", session=session,
                 who=name or f"Volunteer {volunteer_id}", volunteer_id=volunteer_id, kept=erasure.KEPT)
