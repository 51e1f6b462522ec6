"""The statistics' rollups worked out afresh from the facts (docs/design.md §5.3, migration 0022).

A trigger on `stats_facts` keeps `stats_months` and `stats_first_hours` as facts arrive. These statements give
what they must hold, from the facts alone: `rebuild` writes them (a bulk load that wrote facts with the trigger
off, as the statistics benchmark does), and `differences` counts the rows where the kept rollups and the facts
disagree (`timecredits verify`, docs/design.md §3.3).
"""
from __future__ import annotations

from sqlalchemy import Connection, text

_KEY = "month, volunteer_id, kind, org_id, category, activity_category"
_MONTHS = f"""
SELECT date_trunc('month', occurred_on::timestamp)::date AS month, volunteer_id, kind, org_id, category,
       activity_category, count(*)::int AS facts, sum(sign)::int AS net_count, sum(sign * amount)::bigint AS amount,
       sum(sign * minutes)::int AS minutes
FROM stats_facts GROUP BY {_KEY}"""
_FIRST_HOURS = """
SELECT f.volunteer_id, min(f.occurred_on) FILTER (
    WHERE f.sign = 1 AND NOT EXISTS (SELECT 1 FROM stats_facts r WHERE r.original_entry_id = f.entry_id)) AS first_on
FROM stats_facts f WHERE f.kind = 'hours_approved' GROUP BY f.volunteer_id"""


def rebuild(conn: Connection) -> None:
    """Replace both rollups with what the facts say (as the table's owner)."""
    conn.execute(text("DELETE FROM stats_months"))
    # In month order, as the trigger writes them when facts arrive day by day: a period's rows stay together.
    conn.execute(text(f"INSERT INTO stats_months ({_KEY}, facts, net_count, amount, minutes) {_MONTHS} "
                      "ORDER BY month"))
    conn.execute(text("DELETE FROM stats_first_hours"))
    conn.execute(text(f"INSERT INTO stats_first_hours (volunteer_id, first_on) {_FIRST_HOURS}"))


def differences(conn: Connection) -> tuple[int, int]:
    """How many rows of `stats_months` and of `stats_first_hours` differ from the facts (missing, extra or
    changed): (0, 0) when the rollups are exact."""
    months = conn.execute(text(f"""
        SELECT count(*) FROM (
            (SELECT {_KEY}, facts, net_count, amount, minutes FROM stats_months EXCEPT ALL {_MONTHS})
            UNION ALL
            ({_MONTHS} EXCEPT ALL SELECT {_KEY}, facts, net_count, amount, minutes FROM stats_months)
        ) d""")).scalar_one()
    first = conn.execute(text(f"""
        SELECT count(*) FROM (
            (SELECT volunteer_id, first_on FROM stats_first_hours EXCEPT ALL {_FIRST_HOURS})
            UNION ALL
            ({_FIRST_HOURS} EXCEPT ALL SELECT volunteer_id, first_on FROM stats_first_hours)
        ) d""")).scalar_one()
    return int(months), int(first)
