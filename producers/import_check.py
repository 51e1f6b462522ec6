"""What becomes of a parsed hours sheet's rows, told before and after producing (docs/design.md §5.4).

Before: each good row is checked against the registry in PostgreSQL by the very intake rules the worker applies
(`ledger.intake.check_payload`: unknown volunteer, unknown or non-community organisation, not a current member,
too old), rows already imported (their event id has an outcome) are set aside, and an exact repeat of a row
(same volunteer, date, minutes and activity) is held back as a possible duplicate unless the sheet means it.
After: the worker's outcome of every produced event is read from the same tables `GET /v1/events/{id}` reads.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import Connection, Engine, select

from ledger.amounts import format_credits, minutes_to_hundredths
from ledger.domain import Rejection
from ledger.events import EventPayload
from ledger.intake import IntakePolicy, check_payload
from ledger.pg import schema
from ledger.pg.processing import event_outcomes
from ledger.pg.registry import StoredRegistry
from ledger.pipeline import EventOutcome
from producers.hours_csv import GoodRow, ParsedSheet, RejectCode, RejectedRow

__all__ = ["REASON_WORDS", "CheckedSheet", "ImportOutcome", "check_sheet", "describe_credits", "reason_in_words",
           "wait_for_outcomes"]

#: Each reason a row is refused for, in the words a coordinator reads (the report keeps the code).
REASON_WORDS: dict[str, str] = {
    RejectCode.MISSING_VALUE: "a cell is empty",
    RejectCode.BAD_DATE: "the date is not one we can read: write it like 31/10/2026",
    RejectCode.FUTURE_DATE: "the date has not happened yet",
    RejectCode.BAD_HOURS: "the hours are not ones we can read: write them like 1.5, 1:30 or 90m, up to 24",
    RejectCode.INVALID_VOLUNTEER: "the volunteer cell is not a reference or card number",
    RejectCode.UNKNOWN_VOLUNTEER: "nobody has that reference or card number in your organisation",
    RejectCode.INVALID_ACTIVITY: "the activity is empty or too long (at most 200 characters)",
    RejectCode.INVALID_ROW: "the row has more cells than the headings",
    RejectCode.POSSIBLE_DUPLICATE: "the same volunteer, date, hours and activity as a row above it",
    RejectCode.UNKNOWN_CATEGORY: "the category is not one of the kinds of activity, like Befriending or Environment",
    "not_a_member": "the volunteer is not a current member of the organisation",
    "unknown_organisation": "the organisation is not registered",
    "not_a_community_organisation": "the organisation does not log volunteering hours",
    "date_too_old": "the hours are too long ago for an organisation to log: the programme's admin may log them",
    "date_in_future": "the date has not happened yet",
    "too_many_hours": "more than 24 hours approved for the volunteer on one day",
    "already_decided": "the hours were already approved or rejected",
}


def reason_in_words(reason: str | None) -> str:
    return REASON_WORDS.get(reason or "", "the ledger refused it")


@dataclass
class CheckedSheet:
    """A sheet after the registry check: what to produce, what is already in, and whether to approve."""

    to_produce: list[GoodRow] = field(default_factory=list)
    already: list[tuple[GoodRow, EventOutcome]] = field(default_factory=list)
    #: `--approve` asked for an organisation that approves every log itself: no approval events are produced.
    approvals_skipped: bool = False
    auto_approve: bool = False

    def events(self, *, approve: bool) -> list[tuple[UUID, EventPayload]]:
        return [event for row in self.to_produce for event in row.events(approve=approve and not self.auto_approve)]


def check_sheet(conn: Connection, sheet: ParsedSheet, org_id: str, *, actor: str, approve: bool,
                policy: IntakePolicy, keep_duplicates: bool = False) -> CheckedSheet:
    """Sort `sheet.rows` into rows to produce, rows already imported and refused rows (added to `sheet.rejected`,
    so that the report lists them)."""
    registry = StoredRegistry(conn)
    organisation = registry.organisation(org_id)
    checked = CheckedSheet(auto_approve=bool(organisation and organisation.auto_approve))
    checked.approvals_skipped = approve and checked.auto_approve
    outcomes = event_outcomes(conn, [row.event_id for row in sheet.rows])
    first_line: dict[tuple[object, ...], int] = {}
    for row in sheet.rows:
        key = (row.hours.volunteer_id, row.hours.date, row.hours.minutes, row.hours.activity)
        if key in first_line and not keep_duplicates:
            sheet.rejected.append(RejectedRow(
                row.line, RejectCode.POSSIBLE_DUPLICATE,
                f"the same volunteer, date, hours and activity as line {first_line[key]}: if it is a second session, "
                "import the sheet again with --keep-duplicates", row.raw))
            continue
        first_line.setdefault(key, row.line)
        if (outcome := outcomes.get(row.event_id)) is not None:
            checked.already.append((row, outcome))
            continue
        try:
            check_payload(row.hours, registry, actor=actor, policy=policy)
        except Rejection as refused:
            sheet.rejected.append(RejectedRow(row.line, str(refused.reason), refused.message, row.raw))
            continue
        checked.to_produce.append(row)
    sheet.rejected.sort(key=lambda rejected: rejected.line)
    return checked


@dataclass
class ImportOutcome:
    """What the worker made of the produced rows."""

    applied: list[GoodRow] = field(default_factory=list)
    approved_credits: int = 0  # hundredths
    pending_credits: int = 0
    refused: dict[str, list[GoodRow]] = field(default_factory=dict)  # by reason
    unchecked: list[GoodRow] = field(default_factory=list)  # no outcome within the timeout

    @property
    def minutes(self) -> int:
        return sum(row.hours.minutes for row in self.applied)


def wait_for_outcomes(engine: Engine, rows: Sequence[GoodRow], extra_ids: Sequence[UUID], *, timeout_s: float,
                      progress: Callable[[int, int], None] = lambda done, total: None,
                      poll_s: float = 0.5) -> ImportOutcome:
    """Poll PostgreSQL until every produced event (the rows' logs and `extra_ids`, their approvals) has an outcome,
    or `timeout_s` passes; then what became of each row."""
    wanted = [row.event_id for row in rows] + list(extra_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        with engine.connect() as conn:
            decided = event_outcomes(conn, wanted)
        progress(len(decided), len(wanted))
        if len(decided) == len(wanted) or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    with engine.connect() as conn:
        d = schema.hours_decisions
        approved = set(conn.execute(select(d.c.log_event_id).where(
            d.c.log_event_id.in_([row.event_id for row in rows]), d.c.decision == "approved")).scalars())
    result = ImportOutcome()
    for row in rows:
        outcome = decided.get(row.event_id)
        if outcome is None:
            result.unchecked.append(row)
        elif not outcome.applied:
            result.refused.setdefault(outcome.reason or "", []).append(row)
        else:
            result.applied.append(row)
            credits = minutes_to_hundredths(row.hours.minutes)
            if row.event_id in approved:
                result.approved_credits += credits
            else:
                result.pending_credits += credits
    return result


def describe_credits(hundredths: int) -> str:
    return f"{format_credits(hundredths)} credits"
