"""`timecredits import-hours FILE.csv --org ORG [--approve] [--report PATH]`, as a plain function.

`timecredits/cli.py` wires it into the typer app; this module keeps the work and the output.
"""
from __future__ import annotations

from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

from kafka.errors import KafkaError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError

from ledger.actors import admin_actor, org_actor
from ledger.intake import IntakePolicy
from ledger.pg.registry import VolunteerDirectory
from producers.hours_csv import Resolver, SheetError
from producers.import_check import ImportOutcome, describe_credits, reason_in_words, wait_for_outcomes
from producers.import_hours import ImportSummary, import_hours
from producers.kafka import ALL_TOPICS, DeliveryError, EventProducer, ensure_topics, prefixed

__all__ = ["EXIT_BAD_FILE", "EXIT_BROKER", "EXIT_NOT_CHECKED", "EXIT_OK", "EXIT_REFUSED", "default_report_path",
           "import_hours_command"]

EXIT_OK = 0  # every row of the sheet is in the ledger: applied now, or imported before
EXIT_BROKER = 1  # the broker could not be reached or did not acknowledge every event
EXIT_BAD_FILE = 2  # the file cannot be read as an hours sheet (or the database cannot be read); nothing produced
EXIT_REFUSED = 3  # some rows were refused (before producing, or by the worker): they are in the report
EXIT_NOT_CHECKED = 4  # the worker had not decided every produced row when the wait ended (or it was not waited for)

EXIT_CODES_HELP = ("Exit codes: 0 every row is in the ledger (applied now or imported before); 1 the broker did not "
                   "take every event (running it again is safe); 2 the file or the database cannot be read, nothing "
                   "was produced; 3 some rows were refused (see the report); 4 some rows were produced but the worker "
                   "had not decided them when the wait ended (or, with --wait 0, was not waited for).")


def default_report_path(file: Path) -> Path:
    """`hours-2026-10.csv` -> `hours-2026-10.report.csv`, next to it."""
    return file.with_name(f"{file.stem}.report.csv")


def import_hours_command(
    file: Path,
    org: str,
    approve: bool,
    report: Path | None,
    bootstrap_servers: str,
    partitions: int,
    *,
    topic_prefix: str = "",
    console: Console | None = None,
    database_url: str | None = None,
    keep_duplicates: bool = False,
    wait_timeout_s: float | None = 120.0,
    policy: IntakePolicy | None = None,
    as_admin: bool = False,
) -> int:
    """Create the topics if needed, import the sheet as organisation `org`, print what happened; the exit code.

    The events' actor is `org:{org}`, the organisation whose sheet it is (`admin:import-hours` with `as_admin`: the
    programme's admin may log hours older than the organisation may). With `database_url`, each row's volunteer is
    found by the organisation's own reference or by volunteer id (docs/design.md §5.4), every row is checked
    against the registry before anything is produced, and (unless `wait_timeout_s` is None) the worker's outcome
    of each produced row is awaited and summed up.
    """
    out = console or Console()
    err = console or Console(stderr=True)
    report_path = report if report is not None else default_report_path(file)
    actor = admin_actor("import-hours") if as_admin else org_actor(org)
    if not file.is_file():
        err.print(f"[red]No such file:[/] {file}")
        return EXIT_BAD_FILE
    engine: Engine | None = None
    try:
        with ExitStack() as stack:
            resolve: Resolver | None = None
            if database_url is not None:
                engine = create_engine(database_url)
                stack.callback(engine.dispose)
                resolve = VolunteerDirectory(stack.enter_context(engine.connect()), org).resolve
            ensure_topics(bootstrap_servers, partitions, prefixed(ALL_TOPICS, topic_prefix))
            with EventProducer.from_settings(bootstrap_servers, topic_prefix=topic_prefix) as producer:
                summary = import_hours(
                    file, org, producer, approve=approve, report_path=report_path, actor=actor,
                    progress=True, resolve=resolve, engine=engine, policy=policy, keep_duplicates=keep_duplicates,
                )
            _print_produced(out, summary, file, org, approve)
            if engine is None or wait_timeout_s is None:  # produced, not checked: the worker may still refuse rows
                return EXIT_REFUSED if summary.rejected else EXIT_NOT_CHECKED if summary.events else EXIT_OK
            outcome = _wait(out, engine, summary, wait_timeout_s)
    except (DeliveryError, KafkaError) as exc:
        err.print(f"[red]The broker at {bootstrap_servers} did not take every event:[/] {exc}")
        err.print("Running the same command again is safe: each row keeps its event id.")
        return EXIT_BROKER
    except SQLAlchemyError as exc:
        err.print(f"[red]Cannot read the organisation's volunteers from the database:[/] {exc}")
        return EXIT_BAD_FILE
    except (SheetError, ValueError, OSError) as exc:  # ValueError: an invalid organisation id
        err.print(f"[red]Cannot import {file}:[/] {exc}")
        return EXIT_BAD_FILE
    _print_outcome(out, outcome, summary)
    if summary.rejected or outcome.refused:
        return EXIT_REFUSED
    return EXIT_NOT_CHECKED if outcome.unchecked else EXIT_OK


def _print_produced(out: Console, summary: ImportSummary, file: Path, org: str, approve: bool) -> None:
    checked = summary.checked
    if checked is not None and checked.already:
        out.print(f"Already imported: {len(checked.already)} row(s) of {file.name} (nothing produced for them).")
    if summary.events or checked is None or not checked.already:
        approved = f", {len(summary.approval_ids)} approved" if approve and summary.approval_ids else ""
        out.print(f"[green]Produced {summary.events} event(s)[/] for {summary.rows} row(s) of {file.name}{approved}.")
    if checked is not None and checked.approvals_skipped:
        out.print(f"No approvals produced: {org} approves its volunteers' hours by itself as they are logged, "
                  "so --approve has nothing to add.")
    if summary.rejected:
        out.print(f"[yellow]Rejected {summary.rejected} row(s)[/]: see {summary.report_path}")
    else:
        out.print(f"Rejected no row (report: {summary.report_path}).")
    if summary.skipped:
        out.print(f"Skipped {summary.skipped} totals row(s) (listed in the report).")


def _wait(out: Console, engine: Engine, summary: ImportSummary, timeout_s: float) -> ImportOutcome:
    if not summary.produced_rows:
        return ImportOutcome()
    with Progress(TextColumn("[bold]waiting for the ledger worker"), BarColumn(), MofNCompleteColumn(),
                  console=out, transient=False) as bar:
        task = bar.add_task("outcomes", total=len(summary.produced_rows) + len(summary.approval_ids))
        return wait_for_outcomes(engine, summary.produced_rows, summary.approval_ids, timeout_s=timeout_s,
                                 progress=lambda done, _total: bar.update(task, completed=done))


def _print_outcome(out: Console, outcome: ImportOutcome, summary: ImportSummary) -> None:
    if summary.produced_rows:
        hours = Decimal(outcome.minutes) / 60
        out.print(f"Applied: {len(outcome.applied)} log(s), {hours.normalize():f} hours, "
                  f"{describe_credits(outcome.approved_credits)} approved, "
                  f"{describe_credits(outcome.pending_credits)} waiting for approval.")
    for reason, rows in sorted(outcome.refused.items()):
        lines = ", ".join(str(row.line) for row in rows)
        out.print(f"[yellow]Refused by the ledger: {len(rows)} row(s)[/] ({reason_in_words(reason)}): line(s) {lines}.")
    if outcome.unchecked:
        out.print(f"[yellow]Not checked: {len(outcome.unchecked)} row(s)[/] had no outcome from the worker yet; "
                  "run the same command again later to see them (it produces nothing twice).")
    if summary.rejected and not outcome.refused:
        out.print(f"[yellow]{summary.rejected} row(s) were not imported[/]: the report says why, row by row.")
    elif not summary.rejected and not outcome.refused and not outcome.unchecked:
        out.print("[green]Every row of the sheet is in the ledger.[/]")
