"""The exports people ask for (docs/design.md §5.12): an organisation's hours (CSV and Excel), a partner's
redemptions and attended bookings, and a lead's pseudonymous activity export. Every cell people typed passes
through `api.spreadsheet_cells.inert`, so no spreadsheet runs it as a formula."""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date as Date
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from sqlalchemy import func, select

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.services.hours import LoggedHours
from api.spreadsheet_cells import inert
from ledger.amounts import format_credits
from ledger.domain import EntryKind
from ledger.pg import schema

LONDON = ZoneInfo("Europe/London")
Cell = str | int


@dataclass(frozen=True, slots=True)
class Table:
    """An export: its header and rows, and the file name it is sent as (without the extension)."""

    name: str
    header: list[str]
    rows: list[list[Cell]]


def csv_bytes(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.header)
    writer.writerows([inert(cell) if isinstance(cell, str) else cell for cell in row] for row in table.rows)
    return out.getvalue().encode("utf-8")


def xlsx_bytes(table: Table) -> bytes:
    """The table as one worksheet; every text cell is a string cell (never a formula), made inert as in CSV."""
    book = Workbook(write_only=False)
    sheet = book.active
    sheet.title = table.name[:31]
    sheet.append(table.header)
    for row in table.rows:
        sheet.append([inert(cell) if isinstance(cell, str) else cell for cell in row])
    for cells in sheet.iter_rows(min_row=1):
        for cell in cells:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # openpyxl would write a text starting with "=" as a formula
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


HOURS_HEADER = ["log_event_id", "volunteer_id", "reference", "date", "minutes", "credits", "category", "status",
                "decided_at", "activity"]


def hours_table(org_id: str, logs: Sequence[LoggedHours]) -> Table:
    return Table(f"hours-{org_id}", HOURS_HEADER, [
        [str(h.event_id), h.volunteer_id, h.reference or "", h.worked_on.isoformat(), h.minutes,
         format_credits(h.credits), h.category, h.status, h.decided_at.isoformat() if h.decided_at else "",
         h.activity] for h in logs])


def _reversed(entry):  # type: ignore[no-untyped-def]
    """Whether a reversal relates to `entry`."""
    r = schema.entries.alias("reversal")
    return select(r.c.id).where(r.c.related_entry_id == entry.c.id,
                                r.c.kind == EntryKind.ENTRY_REVERSED.value).exists()


PARTNER_HEADER = ["date", "kind", "event_id", "volunteer_id", "credits", "opportunity_id", "opportunity",
                  "reversed"]
_KIND_WORDS = {EntryKind.CREDITS_REDEEMED.value: "redemption", EntryKind.BOOKING_ATTENDED.value: "attended_booking"}


def partner_table(services: Services, principal: Principal, partner_id: str) -> Table:
    """The partner's redemptions and attended bookings, oldest first: for that partner and admins only."""
    if principal.role is Role.ORG and principal.org_id != partner_id:
        raise forbid("a partner reads its own redemptions only")
    if principal.role not in (Role.ORG, Role.ADMIN):
        raise forbid("a partner reads its own redemptions, an admin anyone's")
    e, booked, p, op = schema.entries, schema.entries.alias("booked"), schema.postings, schema.opportunities
    amount = select(func.max(p.c.amount)).where(p.c.entry_id == e.c.id).scalar_subquery()
    opportunity = func.coalesce(e.c.opportunity_id, booked.c.opportunity_id)
    query = (select(e.c.occurred_at, e.c.kind, e.c.event_id, e.c.volunteer_id, amount.label("amount"),
                    opportunity.label("opportunity_id"), op.c.title, _reversed(e).label("reversed"))
             .outerjoin(booked, booked.c.id == e.c.related_entry_id)
             .outerjoin(op, op.c.id == opportunity)
             .where(e.c.org_id == partner_id, e.c.kind.in_(list(_KIND_WORDS)))
             .order_by(e.c.occurred_at, e.c.id))
    with services.engine.connect() as conn:
        rows = conn.execute(query).all()
    return Table(f"redemptions-{partner_id}", PARTNER_HEADER, [
        [r.occurred_at.astimezone(LONDON).date().isoformat(), _KIND_WORDS[r.kind], str(r.event_id), r.volunteer_id,
         format_credits(int(r.amount or 0)), r.opportunity_id or "", r.title or "", "yes" if r.reversed else ""]
        for r in rows])


ACTIVITY_HEADER = ["volunteer", "org_id", "area", "month", "minutes", "category", "age_band", "seb",
                   "first_time_volunteer"]


@dataclass(frozen=True, slots=True)
class Pseudonyms:
    key: bytes

    def of(self, volunteer_id: str) -> str:
        return "p-" + hmac.new(self.key, volunteer_id.encode(), hashlib.sha256).hexdigest()[:16]


def pseudonymiser() -> Pseudonyms:
    """Pseudonyms under a key made for one export and then forgotten: stable within the file, so an analyst can
    follow one volunteer across months, and linked to nothing else (not even another export)."""
    return Pseudonyms(secrets.token_bytes(32))


def activity_table(services: Services, principal: Principal, start: Date, end: Date) -> Table:
    """One row per approved (and not reversed) log worked from `start` to `end`, for analysis: a pseudonym, the
    organisation, the volunteer's area, the month, minutes and kind; age band, background and first time only for
    volunteers who consented to statistics (docs/design.md §5.3). Never a name, a reference or free text."""
    if principal.role not in (Role.LEAD, Role.ADMIN):
        raise forbid("the activity export is for programme leads and admins")
    logs, d, v, e = schema.hours_logs, schema.hours_decisions, schema.volunteers, schema.entries
    query = (select(logs.c.volunteer_id, logs.c.org_id, v.c.area, logs.c.worked_on, logs.c.minutes,
                    logs.c.category, v.c.consent_stats, v.c.age_band, v.c.seb, v.c.first_time_volunteer)
             .join(d, d.c.log_event_id == logs.c.event_id)
             .join(v, v.c.id == logs.c.volunteer_id)
             .outerjoin(e, e.c.id == d.c.entry_id)
             .where(d.c.decision == "approved", logs.c.worked_on >= start, logs.c.worked_on <= end,
                    ~_reversed(e))
             .order_by(logs.c.worked_on, logs.c.org_id, logs.c.event_id))
    with services.engine.connect() as conn:
        rows = conn.execute(query).all()
    names = pseudonymiser()

    def background(consented: bool, value: str | None) -> str:
        return value if consented and value is not None else ""

    return Table(f"activity-{start}-{end}", ACTIVITY_HEADER, [
        [names.of(r.volunteer_id), r.org_id, r.area, r.worked_on.strftime("%Y-%m"), r.minutes, r.category,
         background(r.consent_stats, r.age_band), background(r.consent_stats, r.seb),
         background(r.consent_stats, None if r.first_time_volunteer is None else
                    ("yes" if r.first_time_volunteer else "no"))]
        for r in rows])

