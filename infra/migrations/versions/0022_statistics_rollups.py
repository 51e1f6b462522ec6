"""The statistics' rollups, kept by PostgreSQL from the facts: a volunteer's month, and their first hours.

Revision ID: 0022_statistics_rollups
Revises: 0021_event_notes
Create Date: 2026-12-03

docs/design.md §5.3. Figures are asked for whole months only, so every figure of every breakdown can be
worked out from the facts added up by month, volunteer, kind and the fact's own groups (organisation, category,
kind of activity): `stats_months`. A volunteer is *new* in a period when their first approved hours never
reversed fall in it: `stats_first_hours` holds that day, one row a volunteer, instead of a look through every
volunteer's whole history for each breakdown.

Statement-level triggers on `stats_facts` keep both, from the rows a statement added (only the rows it really
inserted: a fact written again is a conflict that adds nothing, so nothing is added twice), and take out again
the rows an owner's UPDATE or DELETE changed or removed:
- `stats_months` by INSERT … ON CONFLICT DO UPDATE adding the new rows' sums, in key order (two writers lock the
  rows they share in the same order, and each adds to what the other committed);
- `stats_first_hours` by recomputing, never incrementing, each volunteer whose hours the statement added (an
  approval or its reversal), so that it equals the facts whatever order they arrive in. Two batches of one
  volunteer's facts in two transactions would each recompute without the other's rows: the trigger first takes
  the volunteer's row lock (inserting the row, or updating it to itself), in volunteer order, and recomputes in a
  later statement, whose snapshot (READ COMMITTED) includes whatever the holder of the lock committed.

The function the triggers share is SECURITY DEFINER with a fixed search_path, as those of 0012 are: the runtime role may only read
the two tables. Both are filled here from the facts already written.
"""
from __future__ import annotations

from alembic import op

revision = "0022_statistics_rollups"
down_revision = "0021_event_notes"
branch_labels = None
depends_on = None

FUNCTION = "tc_stats_facts_added()"
KEY = "month, volunteer_id, kind, org_id, category, activity_category"
#: The rollup of a set of facts `source`, in the order the rows of `stats_months` are locked.
ROLLUP = f"""
SELECT date_trunc('month', occurred_on::timestamp)::date AS month, volunteer_id, kind, org_id, category,
       activity_category, count(*) AS facts, sum(sign) AS net_count, sum(sign * amount) AS amount,
       sum(sign * minutes) AS minutes
FROM {{source}} GROUP BY {KEY} ORDER BY {KEY}"""


def upgrade() -> None:
    op.execute(f"""
CREATE TABLE stats_months (
    month date NOT NULL CHECK (extract(day FROM month) = 1),
    volunteer_id text NOT NULL,
    kind text NOT NULL,
    org_id text,
    category text,
    activity_category text,
    facts integer NOT NULL,  -- facts of either sign: a volunteer a reversal alone is of is described by it
    net_count integer NOT NULL,  -- facts less reversals
    amount bigint NOT NULL,  -- hundredths of a credit, reversals less
    -- A volunteer's month: the ledger's day rule keeps it to 44,640 minutes, far inside an integer.
    minutes integer NOT NULL,
    CONSTRAINT stats_months_key UNIQUE NULLS NOT DISTINCT ({KEY})
)""")
    op.execute("""
CREATE TABLE stats_first_hours (
    volunteer_id text PRIMARY KEY,
    first_on date  -- NULL: every approval of theirs was reversed
)""")
    op.execute("CREATE INDEX stats_facts_approved_idx ON stats_facts (volunteer_id, occurred_on) "
               "WHERE kind = 'hours_approved' AND sign = 1")
    op.execute(f"""
CREATE FUNCTION {FUNCTION} RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only the statistics worker's INSERTs happen in operation; an owner's UPDATE or DELETE (a wrong fact put
    -- right, docs/operations.md) takes its rows out again, so the rollups always equal the facts.
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO stats_months AS m ({KEY}, facts, net_count, amount, minutes)
            SELECT {KEY}, -facts, -net_count, -amount, -minutes FROM ({ROLLUP.format(source="old_facts")}) AS o
            ORDER BY {KEY}
            ON CONFLICT ON CONSTRAINT stats_months_key DO UPDATE SET
                facts = m.facts + excluded.facts, net_count = m.net_count + excluded.net_count,
                amount = m.amount + excluded.amount, minutes = m.minutes + excluded.minutes;
        DELETE FROM stats_months WHERE facts = 0;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO stats_months AS m ({KEY}, facts, net_count, amount, minutes)
            {ROLLUP.format(source="new_facts")}
            ON CONFLICT ON CONSTRAINT stats_months_key DO UPDATE SET
                facts = m.facts + excluded.facts, net_count = m.net_count + excluded.net_count,
                amount = m.amount + excluded.amount, minutes = m.minutes + excluded.minutes;
        INSERT INTO stats_first_hours AS s (volunteer_id)
            SELECT DISTINCT volunteer_id FROM new_facts WHERE kind = 'hours_approved' ORDER BY volunteer_id
            ON CONFLICT (volunteer_id) DO UPDATE SET first_on = s.first_on;
        UPDATE stats_first_hours s SET first_on = (
            SELECT min(f.occurred_on) FROM stats_facts f
            WHERE f.volunteer_id = s.volunteer_id AND f.kind = 'hours_approved' AND f.sign = 1
              AND NOT EXISTS (SELECT 1 FROM stats_facts r WHERE r.original_entry_id = f.entry_id))
        WHERE s.volunteer_id IN (SELECT volunteer_id FROM new_facts WHERE kind = 'hours_approved');
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE stats_first_hours s SET first_on = (
            SELECT min(f.occurred_on) FROM stats_facts f
            WHERE f.volunteer_id = s.volunteer_id AND f.kind = 'hours_approved' AND f.sign = 1
              AND NOT EXISTS (SELECT 1 FROM stats_facts r WHERE r.original_entry_id = f.entry_id))
        WHERE s.volunteer_id IN (SELECT volunteer_id FROM old_facts WHERE kind = 'hours_approved');
        DELETE FROM stats_first_hours s
        WHERE s.volunteer_id IN (SELECT volunteer_id FROM old_facts WHERE kind = 'hours_approved')
          AND NOT EXISTS (SELECT 1 FROM stats_facts f WHERE f.volunteer_id = s.volunteer_id
                          AND f.kind = 'hours_approved');
    END IF;
    RETURN NULL;
END
$$""")
    op.execute(f"""
DO $$ BEGIN
    EXECUTE format('ALTER FUNCTION {FUNCTION} SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
END $$""")
    op.execute(f"REVOKE EXECUTE ON FUNCTION {FUNCTION} FROM PUBLIC")
    # A trigger with transition tables fires for one kind of statement only: one each, one function.
    op.execute(f"""
CREATE TRIGGER stats_facts_added AFTER INSERT ON stats_facts
    REFERENCING NEW TABLE AS new_facts FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}""")
    op.execute(f"""
CREATE TRIGGER stats_facts_changed AFTER UPDATE ON stats_facts
    REFERENCING OLD TABLE AS old_facts NEW TABLE AS new_facts FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}""")
    op.execute(f"""
CREATE TRIGGER stats_facts_removed AFTER DELETE ON stats_facts
    REFERENCING OLD TABLE AS old_facts FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}""")
    op.execute(f"INSERT INTO stats_months ({KEY}, facts, net_count, amount, minutes) "
               f"{ROLLUP.format(source='stats_facts')}")
    op.execute("""
INSERT INTO stats_first_hours (volunteer_id, first_on)
    SELECT f.volunteer_id, min(f.occurred_on) FILTER (
        WHERE f.sign = 1 AND NOT EXISTS (SELECT 1 FROM stats_facts r WHERE r.original_entry_id = f.entry_id))
    FROM stats_facts f WHERE f.kind = 'hours_approved' GROUP BY f.volunteer_id""")


def downgrade() -> None:
    for trigger in ("stats_facts_added", "stats_facts_changed", "stats_facts_removed"):
        op.execute(f"DROP TRIGGER {trigger} ON stats_facts")
    op.execute(f"DROP FUNCTION {FUNCTION}")
    op.execute("DROP INDEX stats_facts_approved_idx")
    op.execute("DROP TABLE stats_first_hours, stats_months")
