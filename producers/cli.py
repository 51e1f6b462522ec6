"""`timecredits import-hours FILE.csv --org ORG [--approve] [--report PATH]`, as a plain function.

`timecredits/cli.py` wires it into the typer app; this module keeps the work and the output.
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from kafka.errors import KafkaError
from rich.console import Console

from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from ledger.pg.registry import VolunteerDirectory
from producers.hours_csv import Resolver, SheetError
from producers.import_hours import import_hours
from producers.kafka import ALL_TOPICS, DeliveryError, EventProducer, ensure_topics, prefixed

__all__ = ["EXIT_BAD_FILE", "EXIT_BROKER", "EXIT_OK", "default_report_path", "import_hours_command"]

EXIT_OK = 0  # every event produced (refused rows, if any, are in the report)
EXIT_BROKER = 1  # the broker could not be reached or did not acknowledge every event
EXIT_BAD_FILE = 2  # the file cannot be read as an hours sheet; nothing was produced


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
) -> int:
    """Create the topics if needed, import the sheet as organisation `org`, print a summary; the exit code.

    The events' actor is `org:{org}`: the organisation whose sheet it is. With `database_url`, each row's volunteer
    is found by the organisation's own reference or by volunteer id (docs/design.md §5.4); a row naming no one is
    refused in the report.
    """
    out = console or Console()
    err = console or Console(stderr=True)
    report_path = report if report is not None else default_report_path(file)
    if not file.is_file():
        err.print(f"[red]No such file:[/] {file}")
        return EXIT_BAD_FILE
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
                    file, org, producer, approve=approve, report_path=report_path, actor=f"org:{org}",
                    progress=True, resolve=resolve,
                )
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

    approved = f", {summary.rows} approved" if approve else ""
    out.print(f"[green]Produced {summary.events} event(s)[/] for {summary.rows} row(s) of {file.name}{approved}.")
    if summary.rejected:
        out.print(f"[yellow]Rejected {summary.rejected} row(s)[/]: see {summary.report_path}")
    else:
        out.print(f"Rejected no row (report: {summary.report_path}).")
    if summary.skipped:
        out.print(f"Skipped {summary.skipped} totals row(s) (listed in the report).")
    return EXIT_OK

