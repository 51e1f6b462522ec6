"""Import an organisation's hours sheet: parse it, write the report of refused rows, produce the events."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from uuid import UUID

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sqlalchemy import Engine

from ledger.intake import IntakePolicy
from ledger.events import HoursLogged
from ledger.pg import notes
from producers.hours_csv import GoodRow, ParsedSheet, Resolver, read_sheet
from producers.import_check import CheckedSheet, check_sheet
from producers.kafka import EventProducer

__all__ = ["REPORT_COLUMNS", "ImportSummary", "import_hours", "write_report"]

REPORT_COLUMNS = ("line", "reason", "message", "raw")
_FLUSH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ImportSummary:
    rows: int  # good rows, one HoursLogged each
    events: int  # events produced (rows, plus one HoursApproved a row when approved)
    rejected: int
    skipped: int
    report_path: Path
    encoding: str
    log_event_ids: tuple[UUID, ...]
    #: With the registry check: the rows produced, the rows already imported, the approval events produced.
    checked: CheckedSheet | None = None
    produced_rows: tuple[GoodRow, ...] = ()
    approval_ids: tuple[UUID, ...] = ()


def import_hours(
    path: Path,
    org_id: str,
    producer: EventProducer,
    *,
    approve: bool,
    report_path: Path,
    actor: str,
    progress: bool = True,
    today: date | None = None,
    resolve: Resolver | None = None,
    engine: Engine | None = None,
    policy: IntakePolicy | None = None,
    keep_duplicates: bool = False,
) -> ImportSummary:
    """Parse the sheet at `path` for `org_id`, write the report, produce every good row's events and flush.

    The report (`line,reason,message,raw`: rejected rows, then skipped totals rows, by line) is written
    before anything is produced, so it exists even when the broker fails. Raises `SheetError` for an
    unusable file and `DeliveryError` when the broker does not acknowledge every event; running the same
    file again is then safe (deterministic event ids). `resolve` names each row's volunteer (the organisation's
    own reference, or a volunteer id; see `producers.hours_csv.parse_sheet`).

    With `engine`, each row's description is kept in `event_notes` before its event, which carries none, is
    produced (docs/design.md §5.16); without, the descriptions are kept nowhere. With `engine`, rows are first
    checked against the registry (`producers.import_check.check_sheet`): refused
    rows and possible duplicates go to the report, rows already imported are not produced again, and no approval
    is produced for an organisation that approves automatically.
    """
    sheet = read_sheet(path, org_id, today=today, resolve=resolve)
    checked: CheckedSheet | None = None
    if engine is not None:
        with engine.connect() as conn:
            checked = check_sheet(conn, sheet, org_id, actor=actor, approve=approve,
                                  policy=policy or IntakePolicy(), keep_duplicates=keep_duplicates)
        produced_rows = checked.to_produce
        events = checked.events(approve=approve)
    else:
        produced_rows = sheet.rows
        events = sheet.events(approve=approve)
    write_report(sheet, report_path)
    if engine is not None:  # the descriptions stay in PostgreSQL, keyed by each row's event id (§5.16)
        with engine.begin() as conn:
            notes.write_many(conn, [(row.event_id, notes.HOURS_ACTIVITY, row.hours.activity) for row in produced_rows])
    occurred_at = datetime.now(UTC)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task(f"producing {Path(path).name}", total=len(events))
        for event_id, payload in events:
            producer.publish(payload, actor=actor, event_id=event_id, occurred_at=occurred_at)
            bar.advance(task)
        bar.update(task, description="waiting for the broker's acknowledgements")
        producer.flush(timeout=_FLUSH_TIMEOUT_S)
        bar.update(task, description=f"produced {Path(path).name}")
    return ImportSummary(
        rows=len(produced_rows),
        events=len(events),
        rejected=len(sheet.rejected),
        skipped=len(sheet.skipped),
        report_path=report_path,
        encoding=sheet.encoding,
        log_event_ids=tuple(row.event_id for row in sheet.rows),
        checked=checked,
        produced_rows=tuple(produced_rows),
        approval_ids=tuple(event_id for event_id, payload in events if not isinstance(payload, HoursLogged)),
    )


def write_report(sheet: ParsedSheet, report_path: Path) -> None:
    """Rejected and skipped rows as CSV, ordered by line. `raw` is the original row, re-encoded as CSV."""
    entries = [(row.line, str(row.reason), row.message, row.raw) for row in sheet.rejected]
    entries += [(row.line, row.reason, row.message, row.raw) for row in sheet.skipped]
    entries.sort(key=lambda entry: entry[0])
    report_path.parent.mkdir(parents=True, exist_ok=True)
    with open(report_path, "w", encoding="utf-8-sig", newline="") as out:  # BOM: Excel then reads UTF-8
        writer = csv.writer(out)
        writer.writerow(REPORT_COLUMNS)
        for line, reason, message, raw in entries:
            writer.writerow([line, reason, _cell(message), _cell(_csv_line(raw))])


def _csv_line(cells: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()


def _cell(text: str) -> str:
    """Keep a spreadsheet from reading a cell as a formula (CSV injection): prefix `'` as OWASP advises."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
