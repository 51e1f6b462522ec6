"""The coordinator's monthly spreadsheet (docs/design.md §8.3): upload a CSV or Excel .xlsx sheet, see what will be
imported and each bad row explained in place, then confirm. The rows are read by the parser `timecredits
import-hours` uses, and each becomes the events that command would produce, with the same ids: importing the same
sheet twice adds nothing twice."""
from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse

from api.errors import ApiError
from api.publishing import publish, request_event_id
from ledger.activities import ACTIVITY_LABELS
from ledger.actors import org_actor
from ledger.events import HoursLogged
from ledger.pg import notes
from ledger.pg.registry import VolunteerDirectory
from producers.hours_csv import ParsedSheet, parse_sheet
from producers.import_check import REASON_WORDS, check_sheet
from producers.sheets import SheetError
from web.app import PREFIX, CsrfToken, SignedIn, _check_csrf, _only, _page, _services
from web.people import PersonRole, Session

router = APIRouter(prefix=PREFIX, include_in_schema=False)
#: Paths whose requests carry a sheet: the body limit at the edge lets them be larger (docs/design.md §5.5).
UPLOAD_PATHS = (f"{PREFIX}/import", f"{PREFIX}/import/confirm")

#: Why a row is not imported, in words (the parser's reasons and the intake rules' the registry check applies).
_REASONS = REASON_WORDS


def _coordinator(session: Session) -> str:
    person = _only(session, PersonRole.COORDINATOR, who="volunteer coordinators")
    assert person.org_id is not None
    return person.org_id


def _parse(request: Request, org_id: str, data: bytes) -> ParsedSheet:
    """The sheet parsed, each good row checked against the registry as `timecredits import-hours` checks it: a row
    the worker would refuse (not a member, too old, ...) is shown as rejected, with why, and is not sent. Rows
    already imported stay (sending them again adds nothing) and so do repeated rows (two sessions, as before)."""
    services = _services(request)
    with services.engine.connect() as conn:
        parsed = parse_sheet(data, org_id, resolve=VolunteerDirectory(conn, org_id).resolve)
        refused_before = len(parsed.rejected)
        check_sheet(conn, parsed, org_id, actor=org_actor(org_id), approve=False, policy=services.policy,
                    keep_duplicates=True)
    if len(parsed.rejected) > refused_before:
        refused = {row.line for row in parsed.rejected}
        parsed.rows = [row for row in parsed.rows if row.line not in refused]
    return parsed


@router.get("/import", response_class=HTMLResponse)
def import_page(request: Request, session: SignedIn) -> HTMLResponse:
    _coordinator(session)
    return _page(request, "coordinator/import.html", title="Import the monthly spreadsheet", session=session)


@router.post("/import", response_class=HTMLResponse)
async def preview(request: Request, session: SignedIn, csrf_token: CsrfToken = "",
                  sheet: Annotated[UploadFile | None, File()] = None) -> HTMLResponse:
    _check_csrf(session, csrf_token)
    org_id = _coordinator(session)
    data = await sheet.read() if sheet is not None else b""
    if not data:
        return _page(request, "coordinator/import.html", 422, title="Import the monthly spreadsheet",
                     session=session, errors={"sheet": "Choose the spreadsheet to import, a .csv or .xlsx file"})
    try:
        parsed = _parse(request, org_id, data)
    except SheetError as unusable:
        return _page(request, "coordinator/import.html", 422, title="Import the monthly spreadsheet",
                     session=session, errors={"sheet": f"That file cannot be imported: {unusable}"})
    return _page(request, "coordinator/import_preview.html", title="Check the spreadsheet", session=session,
                 parsed=parsed, reasons=_REASONS, kinds=ACTIVITY_LABELS, filename=sheet.filename if sheet else "",
                 content=base64.b64encode(data).decode())


@router.post("/import/confirm", response_class=HTMLResponse)
def confirm(request: Request, session: SignedIn, csrf_token: CsrfToken = "", content: Annotated[str, Form()] = "",
            approve: Annotated[str, Form()] = "") -> HTMLResponse:
    _check_csrf(session, csrf_token)
    org_id = _coordinator(session)
    try:
        data = base64.b64decode(content, validate=True)
        parsed = _parse(request, org_id, data)
    except (binascii.Error, SheetError):
        return _page(request, "coordinator/import.html", 422, title="Import the monthly spreadsheet",
                     session=session, errors={"sheet": "That upload could not be read again: choose the file again"})
    services, principal = _services(request), session.person.principal()
    sent = 0
    try:
        for event_id, payload in parsed.events(approve=approve == "yes"):
            request_event_id.set(event_id)  # the sheet's own ids: a second import of it adds nothing
            with services.engine.begin() as conn:  # the description stays here, the event carries none (§5.16)
                if isinstance(payload, HoursLogged):
                    notes.write(conn, event_id, notes.HOURS_ACTIVITY, payload.activity)
                publish(services, principal, payload, conn=conn)
            sent += 1
    except ApiError:
        return _page(request, "coordinator/import_done.html", 503, title="The import stopped", session=session,
                     sent=sent, rows=len(parsed.rows), stopped=True)
    return _page(request, "coordinator/import_done.html", title="The spreadsheet is imported", session=session,
                 sent=sent, rows=len(parsed.rows), approved=approve == "yes", rejected=len(parsed.rejected))
