"""The statistics' rollups a figure per column: a volunteer's month and its groups, and a volunteer's month alone.

Revision ID: 0023_statistics_cells
Revises: 0022_statistics_rollups
Create Date: 2026-12-03

docs/design.md §5.2 and §5.3. `stats_months` had a row a kind of fact, so every breakdown picked each figure
out of its rows with a filter, and folded a volunteer's rows of a month one more time. Its rows become:
- `stats_cells`: the facts added up by month, volunteer and the facts' own groups (organisation, category, kind
  of activity), each figure in a column of its own, with each kind's count of facts (either sign) and, generated
  from them, `kinds`, a bit a kind;
- `stats_volunteer_months`: the same by month and volunteer alone, with `prev_active`, the volunteer's previous
  month with approved minutes (reversals less) above none: the month breakdown reads it without folding, and
  whether a volunteer was active in the three months before a cell is a look at the cell's own rows; and its
  quarter, which the quarter breakdown groups by.
Both are split into partitions by a hash of the volunteer (`stats.rollup_sql.PARTITIONS`): a breakdown folds
each volunteer's rows, which PostgreSQL then does a partition at a time, in parallel.

The trigger function of 0022 is replaced (its triggers stay): both tables by INSERT … ON CONFLICT DO UPDATE
adding the statement's rows (in key order); then `prev_active` put right for the statement's volunteers, under a
transaction lock a volunteer taken in a fixed order, in a later statement whose snapshot holds what any other
writer of the same volunteer committed; `stats_first_hours` as in 0022, each volunteer's first approval never
reversed looked up in date order rather than as a minimum over all of them. The statements are those of
`stats/rollup_sql.py`, which `stats.rollups` rebuilds and checks the tables with.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

from stats.rollup_sql import (BIGINT_FIGURES, CELL_KEY, COUNTS, FIGURES, MONTH_KEY, PARTITIONED, PARTITIONS,
                              VALUES, delta, empty_rows, kinds_column, months_with_previous, set_previous_active,
                              upsert)

revision = "0023_statistics_cells"
down_revision = "0022_statistics_rollups"
branch_labels = None
depends_on = None

FUNCTION = "tc_stats_facts_added()"
_CELLS = ("stats_cells", "stats_cells_key", CELL_KEY)
_MONTHS = ("stats_volunteer_months", "stats_volunteer_months_pkey", MONTH_KEY)
#: A lock a volunteer for this transaction, in the locks' own order: two writers of one volunteer's facts put
#: `prev_active` right one after the other, the second seeing the first's rows.
_LOCK = ("PERFORM pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(volunteer_id, 23) AS k "
         "FROM {source} ORDER BY 1) l")
#: A volunteer's first approval never reversed: their approvals in date order, the first with no reversal (as a
#: minimum over all of them, the planner would merge every reversal of the programme against each volunteer's).
_FIRST_ON = """
        UPDATE stats_first_hours s SET first_on = (
            SELECT f.occurred_on FROM stats_facts f
            WHERE f.volunteer_id = s.volunteer_id AND f.kind = 'hours_approved' AND f.sign = 1
              AND NOT EXISTS (SELECT 1 FROM stats_facts r WHERE r.original_entry_id = f.entry_id)
            ORDER BY f.occurred_on LIMIT 1)
        WHERE s.volunteer_id IN (SELECT volunteer_id FROM {source} WHERE kind = 'hours_approved');"""


def _columns() -> str:
    figures = [f"{column} {'bigint' if column in BIGINT_FIGURES else 'integer'} NOT NULL" for column, _, _ in FIGURES]
    counts = [f"{column} integer NOT NULL" for column in COUNTS]
    return ",\n    ".join([*figures, *counts, f"kinds smallint GENERATED ALWAYS AS ({kinds_column()}) STORED"])


def upgrade() -> None:
    op.execute(f"""
CREATE TABLE stats_cells (
    month date NOT NULL CHECK (extract(day FROM month) = 1),
    volunteer_id text NOT NULL,
    org_id text,
    category text,
    activity_category text,
    {_columns()},
    CONSTRAINT stats_cells_key UNIQUE NULLS NOT DISTINCT ({', '.join(CELL_KEY)})
) PARTITION BY HASH (volunteer_id)""")
    op.execute(f"""
CREATE TABLE stats_volunteer_months (
    month date NOT NULL CHECK (extract(day FROM month) = 1),
    volunteer_id text NOT NULL,
    {_columns()},
    prev_active date,  -- NULL: no earlier month with approved minutes
    quarter date GENERATED ALWAYS AS (date_trunc('quarter', month::timestamp)::date) STORED,
    CONSTRAINT stats_volunteer_months_pkey PRIMARY KEY (volunteer_id, month)
) PARTITION BY HASH (volunteer_id)""")
    for table in PARTITIONED:
        for n in range(PARTITIONS):
            op.execute(f"CREATE TABLE {table}_{n} PARTITION OF {table} "
                       f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {n})")
    op.execute("CREATE INDEX stats_volunteer_months_month_idx ON stats_volunteer_months (month)")
    added = ";\n        ".join(upsert(table, key_name, key, "new_facts") for table, key_name, key in (_CELLS, _MONTHS))
    taken = ";\n        ".join(upsert(table, key_name, key, "old_facts", -1)
                               for table, key_name, key in (_CELLS, _MONTHS))
    both = "SELECT volunteer_id FROM new_facts UNION SELECT volunteer_id FROM old_facts"
    either = ("(SELECT volunteer_id, occurred_on FROM new_facts UNION ALL "
              "SELECT volunteer_id, occurred_on FROM old_facts) f")
    op.execute(f"""
CREATE OR REPLACE FUNCTION {FUNCTION} RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only the statistics worker's INSERTs happen in operation; an owner's UPDATE or DELETE (a wrong fact put
    -- right, docs/operations.md) takes its rows out again, so the rollups always equal the facts.
    IF TG_OP = 'INSERT' THEN
        {_LOCK.format(source="new_facts")};
    ELSIF TG_OP = 'UPDATE' THEN
        {_LOCK.format(source=f"({both}) v")};
    ELSE
        {_LOCK.format(source="old_facts")};
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {taken};
        {empty_rows("stats_cells")};
        {empty_rows("stats_volunteer_months")};
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {added};
        INSERT INTO stats_first_hours AS s (volunteer_id)
            SELECT DISTINCT volunteer_id FROM new_facts WHERE kind = 'hours_approved' ORDER BY volunteer_id
            ON CONFLICT (volunteer_id) DO UPDATE SET first_on = s.first_on;
        {_FIRST_ON.format(source="new_facts")}
    END IF;
    IF TG_OP = 'INSERT' THEN
        {set_previous_active("new_facts")};
    ELSIF TG_OP = 'UPDATE' THEN
        {set_previous_active(either)};
    ELSE
        {set_previous_active("old_facts")};
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {_FIRST_ON.format(source="old_facts")}
        DELETE FROM stats_first_hours s
        WHERE s.volunteer_id IN (SELECT volunteer_id FROM old_facts WHERE kind = 'hours_approved')
          AND NOT EXISTS (SELECT 1 FROM stats_facts f WHERE f.volunteer_id = s.volunteer_id
                          AND f.kind = 'hours_approved');
    END IF;
    RETURN NULL;
END
$$""")
    # CREATE OR REPLACE resets what is not said again: the function stays SECURITY DEFINER, as in 0022.
    op.execute(f"""
DO $$ BEGIN
    EXECUTE format('ALTER FUNCTION {FUNCTION} SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
END $$""")
    # Filled from the facts already written, in month order, as the trigger writes them when facts arrive.
    op.execute(f"INSERT INTO stats_cells ({', '.join((*CELL_KEY, *VALUES))}) "
               f"SELECT * FROM ({delta('stats_facts', CELL_KEY)}) c ORDER BY month")
    op.execute(f"INSERT INTO stats_volunteer_months ({', '.join((*MONTH_KEY, *VALUES, 'prev_active'))}) "
               f"SELECT * FROM ({months_with_previous('stats_facts')}) m ORDER BY month")
    op.execute("DROP TABLE stats_months")


def _rollups_by_kind() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rollups_by_kind", Path(__file__).with_name(
        "0022_statistics_rollups.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    # The rollups by kind, worked out again from the facts: 0022's own statements, after taking away what they make.
    for trigger in ("stats_facts_added", "stats_facts_changed", "stats_facts_removed"):
        op.execute(f"DROP TRIGGER {trigger} ON stats_facts")
    op.execute(f"DROP FUNCTION {FUNCTION}")
    op.execute("DROP INDEX stats_facts_approved_idx")
    op.execute("DROP TABLE stats_cells, stats_volunteer_months, stats_first_hours")
    _rollups_by_kind().upgrade()
