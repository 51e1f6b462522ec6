"""The statistics' rollups worked out afresh from the facts (docs/design.md §5.2, migrations 0022 and 0023).

A trigger on `stats_facts` keeps `stats_cells`, `stats_volunteer_months` and `stats_first_hours` as facts
arrive, with the statements of `stats/rollup_sql.py`. These give what the tables must hold, from the facts
alone: `rebuild` writes them (a bulk load that wrote facts with the trigger off, as the statistics benchmark
does), and `differences` counts the rows where the kept rollups and the facts disagree (`timecredits verify`,
docs/design.md §3.3).
"""
from __future__ import annotations

from sqlalchemy import Connection, text

from stats.rollup_sql import CELL_KEY, MONTH_KEY, VALUES, delta, months_with_previous

_CELLS = delta("stats_facts", CELL_KEY)
_MONTHS = months_with_previous("stats_facts")
_FIRST_HOURS = """
SELECT f.volunteer_id, min(f.occurred_on) FILTER (
    WHERE f.sign = 1 AND NOT EXISTS (SELECT 1 FROM stats_facts r WHERE r.original_entry_id = f.entry_id)) AS first_on
FROM stats_facts f WHERE f.kind = 'hours_approved' GROUP BY f.volunteer_id"""
_CELL_COLUMNS = ", ".join((*CELL_KEY, *VALUES))
_MONTH_COLUMNS = ", ".join((*MONTH_KEY, *VALUES, "prev_active"))
#: (table, its columns as the facts give them, the statement that gives them)
_TABLES = (("stats_cells", _CELL_COLUMNS, _CELLS), ("stats_volunteer_months", _MONTH_COLUMNS, _MONTHS),
           ("stats_first_hours", "volunteer_id, first_on", _FIRST_HOURS))


def rebuild(conn: Connection) -> None:
    """Replace the rollups with what the facts say (as the tables' owner), in the caller's transaction.

    New facts wait meanwhile (a statistics worker's batch is written after the rebuild commits, and adds to it):
    otherwise a fact committed between the deletes and the inserts would be counted twice."""
    conn.execute(text("LOCK TABLE stats_facts IN SHARE MODE"))
    for table, columns, statement in _TABLES:
        conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
        # In month order, as the trigger writes them when facts arrive day by day: a period's rows stay together.
        order = " ORDER BY month" if table != "stats_first_hours" else ""
        conn.execute(text(f"INSERT INTO {table} ({columns}) SELECT * FROM ({statement}) s{order}"))  # noqa: S608


def differences(conn: Connection) -> dict[str, int]:
    """How many rows of each rollup differ from the facts (missing, extra or changed): all 0 when exact."""
    found = {}
    for table, columns, statement in _TABLES:
        found[table] = int(conn.execute(text(f"""
            SELECT count(*) FROM (
                (SELECT {columns} FROM {table} EXCEPT ALL SELECT * FROM ({statement}) s)
                UNION ALL
                (SELECT * FROM ({statement}) s EXCEPT ALL SELECT {columns} FROM {table})
            ) d""")).scalar_one())  # noqa: S608 - fixed names
    return found
