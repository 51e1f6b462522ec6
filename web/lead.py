"""The programme lead's door (docs/design.md §8.3): the committee report a click away, for a period chosen in
words. The dashboard itself is served at / and reads the statistics with the lead's session (§8.1)."""
from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from stats.queries import parse_period
from stats.report import period_title, render_report
from web.app import PREFIX, SignedIn, _only, _page, _services
from web.people import PersonRole

router = APIRouter(prefix=PREFIX, include_in_schema=False)

#: The report is one self-contained document with its own inline styles and no script: it is sent with a
#: policy of its own that allows exactly that.
REPORT_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
                 "form-action 'none'; frame-ancestors 'none'")


def periods(today: date) -> list[tuple[str, str]]:
    """(code, words) for the last four whole quarters, newest first, then the last whole year."""
    quarter = (today.month - 1) // 3  # the current quarter's index, 0-3: not whole yet
    year = today.year
    found = []
    for _ in range(4):
        quarter -= 1
        if quarter < 0:
            quarter, year = 3, year - 1
        code = f"{year}-Q{quarter + 1}"
        found.append((code, period_title(*parse_period(code))))
    last_year = f"{today.year - 1}"
    found.append((last_year, period_title(*parse_period(last_year))))
    return found


@router.get("/report", response_class=HTMLResponse)
def report_page(request: Request, session: SignedIn,
                period: Annotated[str | None, Query(max_length=10)] = None) -> HTMLResponse:
    _only(session, PersonRole.LEAD, PersonRole.ADMIN, who="programme leads and admins")
    choices = periods(date.today())
    if period is None:
        return _page(request, "lead/report.html", title="The committee report", session=session, choices=choices)
    try:
        start, end = parse_period(period)
    except ValueError:
        return _page(request, "lead/report.html", 422, title="The committee report", session=session,
                     choices=choices, errors={"period": "Choose a period, like a quarter or a year"})
    document = render_report(_services(request).engine, start, end)
    return HTMLResponse(document, headers={"Content-Security-Policy": REPORT_POLICY})
