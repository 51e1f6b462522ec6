"""`timecredits import-areas FILE.csv`, `timecredits report PERIOD --out FILE.html` and `timecredits
rebuild-statistics`, as plain functions.

`timecredits/cli.py` wires them into the typer app (with an engine on a migrated database); this module keeps
the work and the output.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine

from stats import rollups
from stats.areas import AreasFileError, import_areas
from stats.queries import parse_period
from stats.report import period_title, render_report

__all__ = ["EXIT_BAD_FILE", "EXIT_BAD_ROWS", "EXIT_OK", "import_areas_command", "rebuild_statistics_command",
           "report_command"]

EXIT_OK = 0
EXIT_BAD_ROWS = 1  # import-areas: some rows are bad, nothing was imported; report: the file could not be written
EXIT_BAD_FILE = 2  # import-areas: the file cannot be read as an areas file; report: not a period


def import_areas_command(file: Path, engine: Engine, console: Console) -> int:
    """Validate the areas file and upsert it by code in one transaction; print every bad row; the exit code.

    0: every row imported; 1: some rows are bad (each printed with its line and reason) and nothing was
    imported; 2: the file is missing or cannot be read as an areas file.
    """
    if not file.is_file():
        console.print(f"[red]No such file:[/] {escape(str(file))}")
        return EXIT_BAD_FILE
    try:
        result = import_areas(engine, file)
    except (AreasFileError, OSError) as exc:
        console.print(f"[red]Cannot import {escape(str(file))}:[/] {escape(str(exc))}")
        return EXIT_BAD_FILE
    if result.rejected:
        console.print(f"[red]{len(result.rejected)} bad row(s) in {escape(file.name)}; nothing was imported:[/]")
        for row in result.rejected:
            console.print(f"  line {row.line}: {escape(row.message)} [dim]({row.reason})[/]")
        console.print("Correct the rows and import the file again: an area table half-imported would mislead.")
        return EXIT_BAD_ROWS
    console.print(f"[green]Imported {result.rows} area(s)[/] from {escape(file.name)}: {result.inserted} new, "
                  f"{result.updated} updated, {result.unchanged} unchanged.")
    return EXIT_OK


def report_command(period: str, out: Path, engine: Engine, console: Console, *,
                   programme: str = "Time Credits programme") -> int:
    """Write the committee report for `period` ('2026-Q3', '2026-07' or '2026') to `out` (HTML); the exit code.

    0: written; 1: the file could not be written; 2: `period` is not a period. When `out` is a directory, the
    report goes into it as `participation-report-PERIOD.html`.
    """
    try:
        start, end = parse_period(period)
    except ValueError:  # parse_period's own message can be Python's ("invalid literal for int()")
        console.print(f"[red]{escape(repr(period))} is not a period:[/] use 2026-Q3, 2026-07 or 2026")
        return EXIT_BAD_FILE
    if out.is_dir():
        out = out / f"participation-report-{period.strip().upper()}.html"
    document = render_report(engine, start, end, programme=programme)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(document, encoding="utf-8")
    except OSError as exc:
        console.print(f"[red]Cannot write {escape(str(out))}:[/] {escape(str(exc))}")
        return EXIT_BAD_ROWS
    console.print(f"[green]Report for {escape(period_title(start, end))} written to[/] {escape(str(out))} "
                  "(open it in a browser; it prints on A4).")
    return EXIT_OK


def rebuild_statistics_command(engine: Engine, console: Console) -> int:
    """Work the statistics' rollups out afresh from the facts (docs/operations.md, when verify finds them
    different); say how many rows differed and that none do now. Always 0: a failure raises."""
    with engine.begin() as conn:
        before = rollups.differences(conn)
        rollups.rebuild(conn)
        after = rollups.differences(conn)
    for table, rows in before.items():
        console.print(f"{table}: {rows} row(s) differed from the facts; {after[table]} now")
    return EXIT_OK
