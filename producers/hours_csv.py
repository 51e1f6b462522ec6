"""An organisation's monthly hours spreadsheet (CSV) -> validated `HoursLogged` events. Pure: no Kafka here.

What a sheet looks like (docs/context: "first name or volunteer number, date, hours, activity"):

    Volunteer,Date,Hours,Activity
    V0001,02/10/2026,1.5,Food bank shift
    V0002,3 Oct 2026,1:30,Litter pick

- Header row, matched case-insensitively with surrounding spaces ignored: `volunteer` (or `volunteer_id`,
  `volunteer id`, `volunteer number`, `volunteer no`), `date`, `hours` (or `time`), `activity` (or
  `description`). Other columns are ignored; a missing one makes the whole file unusable (`SheetError`).
- Dates are UK, day first: `02/11/2026`, `2/11/26`, `02-11-2026`, `02.11.2026`, `2 Nov 2026`,
  `2 November 2026`, and ISO `2026-11-02`. Impossible dates and dates after `today` are refused.
- Hours: `1.5` (decimal point only), `1:30` (h:mm), `2h`, `1h30`, `90m`, `90 mins`; a whole number of
  minutes, more than 0 and at most 24 hours.
- Blank rows are skipped silently; totals rows (first non-empty cell `Total`, `Totals`, `TOTAL hours`, ...)
  are skipped and reported. UTF-8 with or without a byte-order mark, else Windows-1252 (Excel's "CSV").

Line numbers are the spreadsheet's row numbers: the header is row 1 (a cell holding a line break is still one
row, so this is the record count, not the physical line count).

Event ids are derived from the content, so that importing the same sheet again (or re-sorted) yields the same
ids and the ledger, idempotent by event id, credits nothing twice:
`uuid5(NAMESPACE, f"{org_id}|{volunteer}|{date}|{minutes}|{activity}|{n}")`, where `n` counts the identical
good rows above it (two identical lines are two sessions, two events). Values are the normalised ones
(`1.5` and `1:30` are both 90 minutes). Correcting a row changes its id: the old log stays and is rejected
through the API, the corrected one is logged anew.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from uuid import UUID, uuid5

from pydantic import ValidationError

from ledger.activities import ACTIVITY_LABELS, activity_category
from ledger.events import EventPayload, HoursApproved, HoursLogged, summarise
from producers.sheets import Header, RowProblem, SheetError, open_sheet
from producers.xlsx import is_xlsx, xlsx_as_csv

__all__ = [
    "NAMESPACE",
    "GoodRow",
    "ParsedSheet",
    "RejectCode",
    "RejectedRow",
    "SheetError",
    "SkippedRow",
    "TOTALS_ROW",
    "approval_event_id",
    "log_event_id",
    "parse_duration",
    "parse_sheet",
    "parse_uk_date",
    "read_sheet",
]

#: Fixed namespace of spreadsheet event ids: uuid5(NAMESPACE_URL, "urn:timecredits:hours-csv:v1").
#: Never change it: every id of every sheet ever imported depends on it.
NAMESPACE = UUID("4cc2a576-2c1b-585c-96bd-66bd726d8241")

MAX_MINUTES = 24 * 60


class RejectCode(StrEnum):
    """Why a row was refused; the `reason` column of the import report."""

    MISSING_VALUE = "missing_value"
    BAD_DATE = "bad_date"
    FUTURE_DATE = "future_date"
    BAD_HOURS = "bad_hours"
    INVALID_VOLUNTEER = "invalid_volunteer"
    UNKNOWN_VOLUNTEER = "unknown_volunteer"
    INVALID_ACTIVITY = "invalid_activity"
    UNKNOWN_CATEGORY = "unknown_category"
    INVALID_ROW = "invalid_row"
    POSSIBLE_DUPLICATE = "possible_duplicate"


TOTALS_ROW = "totals_row"


@dataclass(frozen=True)
class GoodRow:
    line: int
    event_id: UUID
    hours: HoursLogged
    raw: tuple[str, ...] = ()  # the row as the sheet has it, for the report when the registry refuses it

    def events(self, *, approve: bool) -> list[tuple[UUID, EventPayload]]:
        """The row's `HoursLogged`, followed by its `HoursApproved` when the sheet is approved as submitted."""
        events: list[tuple[UUID, EventPayload]] = [(self.event_id, self.hours)]
        if approve:
            approval = HoursApproved(
                log_event_id=self.event_id, volunteer_id=self.hours.volunteer_id, org_id=self.hours.org_id
            )
            events.append((approval_event_id(self.event_id), approval))
        return events


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str  # a `RejectCode`, or the intake rule's reason when the registry refuses the row before producing
    message: str
    raw: tuple[str, ...]


@dataclass(frozen=True)
class SkippedRow:
    line: int
    reason: str
    message: str
    raw: tuple[str, ...]


@dataclass
class ParsedSheet:
    rows: list[GoodRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)
    encoding: str = "utf-8"

    def events(self, *, approve: bool) -> list[tuple[UUID, EventPayload]]:
        return [event for row in self.rows for event in row.events(approve=approve)]


# --- ids ------------------------------------------------------------------------------------


def log_event_id(org_id: str, volunteer_id: str, day: date, minutes: int, activity: str, n: int) -> UUID:
    return uuid5(NAMESPACE, f"{org_id}|{volunteer_id}|{day.isoformat()}|{minutes}|{activity}|{n}")


def approval_event_id(log_id: UUID) -> UUID:
    return uuid5(NAMESPACE, f"approve|{log_id}")


# --- cells ----------------------------------------------------------------------------------

_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                "November", "December")  # not calendar.month_name, which follows the process's locale
_MONTHS: dict[str, int] = {
    **{name.lower(): number for number, name in enumerate(_MONTH_NAMES, start=1)},
    **{name[:3].lower(): number for number, name in enumerate(_MONTH_NAMES, start=1)},
    "sept": 9,
}

_NUMERIC_DATE = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})")
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_NAMED_DATE = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?[\s-]+([a-z]+)\.?,?[\s-]+(\d{4}|\d{2})", re.IGNORECASE)
_MIDNIGHT = re.compile(r"\s+0?0:00(?::00)?$")  # a date cell exported as a date and time


def parse_uk_date(text: str, *, today: date | None = None) -> date:
    """A UK (day first) or ISO date; raises `ValueError` (a `RowProblem`) saying what is wrong."""
    value = _MIDNIGHT.sub("", text.strip())
    if match := _ISO_DATE.fullmatch(value):
        year, month, day = (int(g) for g in match.groups())
    elif match := _NUMERIC_DATE.fullmatch(value):
        day, month, year = int(match[1]), int(match[3]), int(match[4])
        if len(match[4]) == 2:
            year += 2000
    elif match := _NAMED_DATE.fullmatch(value):
        month_number = _MONTHS.get(match[2].lower())
        if month_number is None:
            raise RowProblem(RejectCode.BAD_DATE, f"{text!r}: {match[2]!r} is not a month")
        day, month, year = int(match[1]), month_number, int(match[3])
        if len(match[3]) == 2:
            year += 2000
    else:
        raise RowProblem(RejectCode.BAD_DATE, f"{text!r} is not a date (expected DD/MM/YYYY, e.g. 02/11/2026)")
    if not 1 <= month <= 12:
        hint = " (dates are read day first, DD/MM/YYYY)" if 1 <= day <= 12 else ""
        raise RowProblem(RejectCode.BAD_DATE, f"{text!r} has no month {month}{hint}")
    try:
        result = date(year, month, day)
    except ValueError:
        raise RowProblem(
            RejectCode.BAD_DATE, f"{text!r} is not a real date: {_MONTH_NAMES[month - 1]} {year} has no day {day}"
        ) from None
    if today is not None and result > today:
        raise RowProblem(RejectCode.FUTURE_DATE, f"{text!r} is in the future (today is {today:%d/%m/%Y})")
    return result


_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DECIMAL_HOURS = re.compile(_NUMBER)
_CLOCK = re.compile(r"(\d+):([0-5]\d)(?::([0-5]\d))?")
_HOURS_UNITS = re.compile(_NUMBER + r"\s*(?:h|hrs?|hours?)(?:\s*(\d+)\s*(?:m|mins?|minutes?)?)?", re.IGNORECASE)
_MINUTES_UNITS = re.compile(r"(\d+)\s*(?:m|mins?|minutes?)", re.IGNORECASE)
_DECIMAL_COMMA = re.compile(r"\d*,\d+")


def parse_duration(text: str) -> int:
    """Hours as written in a sheet -> whole minutes, more than 0 and at most 24 hours."""
    value = text.strip()
    if match := _DECIMAL_HOURS.fullmatch(value):
        minutes = _whole_minutes(Decimal(match[1]) * 60, text)
    elif match := _CLOCK.fullmatch(value):
        if match[3] not in (None, "00"):
            raise RowProblem(RejectCode.BAD_HOURS, f"{text!r} is not a whole number of minutes")
        minutes = int(match[1]) * 60 + int(match[2])
    elif match := _HOURS_UNITS.fullmatch(value):
        minutes = _whole_minutes(Decimal(match[1]) * 60, text) + int(match[2] or 0)
    elif match := _MINUTES_UNITS.fullmatch(value):
        minutes = int(match[1])
    elif _DECIMAL_COMMA.fullmatch(value):
        raise RowProblem(RejectCode.BAD_HOURS, f"{text!r}: use a decimal point ({value.replace(',', '.')})")
    elif value.startswith("-"):
        raise RowProblem(RejectCode.BAD_HOURS, f"{text!r}: hours cannot be negative")
    else:
        raise RowProblem(RejectCode.BAD_HOURS, f"{text!r} is not a number of hours (expected e.g. 1.5 or 1:30)")
    if minutes <= 0:
        raise RowProblem(RejectCode.BAD_HOURS, f"{text!r}: hours must be more than zero")
    if minutes > MAX_MINUTES:
        raise RowProblem(RejectCode.BAD_HOURS, f"{text!r}: more than 24 hours in one row")
    return minutes


def _whole_minutes(minutes: Decimal, text: str) -> int:
    try:
        whole = minutes.to_integral_value()
    except InvalidOperation:
        raise RowProblem(RejectCode.BAD_HOURS, f"{text!r} is not a number of hours") from None
    if minutes != whole:
        raise RowProblem(
            RejectCode.BAD_HOURS,
            f"{text!r} hours is {minutes.normalize():f} minutes, not a whole number of minutes (write h:mm, e.g. 1:20)",
        )
    return int(whole)


# --- the sheet ------------------------------------------------------------------------------

_COLUMNS: dict[str, tuple[str, ...]] = {
    "volunteer": ("volunteer", "volunteer id", "volunteer number", "volunteer no"),
    "date": ("date",),
    "hours": ("hours", "time"),
    "activity": ("activity", "description"),
    "category": ("category", "kind of activity", "activity category"),
}
_REQUIRED = ("volunteer", "date", "hours", "activity")
_TOTALS = re.compile(r"(?:sub[\s-]?|grand\s+)?totals?\b", re.IGNORECASE)


#: The volunteer a sheet's `volunteer` cell names (the organisation's own reference, or a volunteer id), or None.
Resolver = Callable[[str], str | None]


def read_sheet(path: Path | str, org_id: str, *, today: date | None = None,
               resolve: Resolver | None = None) -> ParsedSheet:
    """Read and parse the CSV file at `path` (see `parse_sheet`)."""
    return parse_sheet(Path(path).read_bytes(), org_id, today=today, resolve=resolve)


def parse_sheet(data: bytes | str, org_id: str, *, today: date | None = None,
                resolve: Resolver | None = None) -> ParsedSheet:
    """Parse a sheet (CSV text, or an Excel .xlsx workbook's first worksheet) for organisation `org_id`. `today`
    (default: today in London) bounds the dates.

    With `resolve`, each row's `volunteer` cell is looked up (the organisation's own reference for a volunteer,
    or a volunteer id, docs/design.md §5.4) and the row carries the volunteer's id; a cell naming no one is a
    refused row (`unknown_volunteer`). Without it, the cell is taken as the volunteer id.

    Raises `SheetError` when the file as a whole is unusable; row problems end up in `rejected`.
    """
    _check_org_id(org_id)
    today = today if today is not None else _london_today()
    if isinstance(data, bytes) and is_xlsx(data):
        try:
            data = xlsx_as_csv(data)
        except ValueError as exc:
            raise SheetError(str(exc)) from exc
    table = open_sheet(data, _COLUMNS, required=_REQUIRED, expected="volunteer, date, hours, activity")
    sheet = ParsedSheet(encoding=table.encoding)
    seen: Counter[tuple[str, date, int, str]] = Counter()
    for line, raw in table.rows:
        first = next(cell.strip() for cell in raw if cell.strip())
        if _TOTALS.match(first):
            sheet.skipped.append(SkippedRow(line, TOTALS_ROW, f"totals row ({first!r}) skipped", raw))
            continue
        try:
            hours = _row(raw, table.header, org_id, today, resolve)
        except RowProblem as problem:
            sheet.rejected.append(RejectedRow(line, problem.code, problem.message, raw))
            continue
        key = (hours.volunteer_id, hours.date, hours.minutes, hours.activity)
        event_id = log_event_id(org_id, *key, seen[key])
        seen[key] += 1
        sheet.rows.append(GoodRow(line, event_id, hours, raw))
    return sheet


def _row(raw: tuple[str, ...], header: Header, org_id: str, today: date, resolve: Resolver | None) -> HoursLogged:
    if any(cell.strip() for cell in raw[header.width :]):
        raise RowProblem(
            RejectCode.INVALID_ROW,
            f"{len(raw)} cells but {header.width} headings: a value holding a comma must be in quotes "
            "(and hours take a decimal point, not a comma)",
        )
    values = {name: raw[index].strip() if index < len(raw) else "" for name, index in header.columns.items()}
    missing = [name for name in _REQUIRED if not values[name]]
    if missing:
        raise RowProblem(RejectCode.MISSING_VALUE, f"no {', no '.join(missing)}")
    day = parse_uk_date(values["date"], today=today)
    minutes = parse_duration(values["hours"])
    category = _category(values.get("category", ""))
    if resolve is not None:
        volunteer_id = resolve(values["volunteer"])
        if volunteer_id is None:
            raise RowProblem(
                RejectCode.UNKNOWN_VOLUNTEER,
                f"no volunteer has the reference {values['volunteer']!r} at {org_id}, nor that volunteer id: give "
                "the volunteer this reference (or use their volunteer id) and import the sheet again",
            )
        values["volunteer"] = volunteer_id
    try:
        return HoursLogged(
            volunteer_id=values["volunteer"], org_id=org_id, date=day, minutes=minutes, activity=values["activity"],
            category=category,
        )
    except ValidationError as exc:
        fields = {error["loc"][0] for error in exc.errors() if error["loc"]}
        if fields == {"volunteer_id"}:
            raise RowProblem(
                RejectCode.INVALID_VOLUNTEER,
                f"{values['volunteer']!r} is not a volunteer id (the programme's volunteer number: letters, "
                "digits, '.', '_' or '-', at most 64)",
            ) from None
        if fields == {"activity"}:
            raise RowProblem(RejectCode.INVALID_ACTIVITY, summarise(exc)) from None
        raise RowProblem(RejectCode.INVALID_ROW, summarise(exc)) from None


def _category(text: str) -> str:
    """An empty or absent Category cell is "other"; otherwise the code or the words of a kind of activity."""
    if not text:
        return "other"
    code = activity_category(text)
    if code is None:
        raise RowProblem(RejectCode.UNKNOWN_CATEGORY, f"{text!r} is not a kind of activity (use one of: "
                                                       f"{', '.join(ACTIVITY_LABELS.values())})")
    return code


def _check_org_id(org_id: str) -> None:
    try:
        HoursLogged(volunteer_id="x", org_id=org_id, date=date(2000, 1, 1), minutes=1)
    except ValidationError as exc:
        raise ValueError(f"invalid organisation id {org_id!r}: {summarise(exc)}") from exc


def _london_today() -> date:
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        return datetime.now(ZoneInfo("Europe/London")).date()
    except (ImportError, ZoneInfoNotFoundError):
        return date.today()
