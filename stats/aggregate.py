"""A breakdown's figures, aggregated by PostgreSQL: one statement gives every row and the total.

The rules are those of docs/design.md §5.3, in SQL:
- a *cell* is a group's facts in its period: the breakdown's period, or for a month or a quarter, that month or
  quarter; the total is the cell of every fact in the period, groups or none;
- *volunteers* are those with any fact in the cell; *active* ones have approved minutes adding up to more than
  nothing there (an approval less its reversal is none);
- *new* active volunteers have their first approved hours never reversed in the cell's period
  (`stats_first_hours`, kept by PostgreSQL: migration 0022);
- *retained* active volunteers were also active, in any group, in the three months before the cell starts;
- *first-time* active volunteers said at sign-up that they had never volunteered;
- every other figure sums the facts' signed amounts, minutes or counts, and the contributors to each figure are
  the distinct volunteers whose facts it sums.

The statement reads `stats_months`, the facts added up by month, volunteer, kind and the fact's own groups (kept
by PostgreSQL, migration 0022): periods are whole months, so nothing finer is needed. Its rows are folded, in
one scan, into one a volunteer a cell; those are folded again into one a volunteer for the total, and all are
counted together. Only the three months before each cell's start are read besides the period.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, text

from stats.model import Figures

#: How each grouping places a month's row: its group's key, and for months and quarters the cell's own first and
#: last days (NULL: the breakdown's period). A volunteer's area and demographics come from the registry as it is
#: now: a withdrawn consent takes effect for every figure computed afterwards (docs/design.md §5.7).
_GROUPS: dict[str, tuple[str, str, str]] = {
    "month": ("to_char(f.month::timestamp, 'YYYY-MM')", "f.month",
              "(f.month + interval '1 month - 1 day')::date"),
    "quarter": ("to_char(f.month::timestamp, 'YYYY') || '-Q' || extract(quarter FROM f.month::timestamp)",
                "date_trunc('quarter', f.month::timestamp)::date",
                "(date_trunc('quarter', f.month::timestamp) + interval '3 months - 1 day')::date"),
    "org": ("f.org_id", "NULL::date", "NULL::date"),
    "area": ("coalesce(v.area, 'unknown')", "NULL::date", "NULL::date"),
    "age_band": ("CASE WHEN v.consent_stats THEN coalesce(v.age_band, 'not_given') ELSE 'undisclosed' END",
                 "NULL::date", "NULL::date"),
    "seb": ("CASE WHEN v.consent_stats THEN coalesce(v.seb, 'not_given') ELSE 'undisclosed' END",
            "NULL::date", "NULL::date"),
    "category": ("f.category", "NULL::date", "NULL::date"),
    # Hours recorded before there were kinds of activity count as "other"; spending and gifts have no kind.
    "activity": ("CASE WHEN f.kind = 'hours_approved' THEN coalesce(f.activity_category, 'other') END",
                 "NULL::date", "NULL::date"),
}
_NEEDS_REGISTRY = frozenset({"area", "age_band", "seb"})

#: Figures that count facts of a kind (each fact adds its sign), and the kinds whose volunteers each figure
#: describes.
_COUNTERS = {"bookings": "opportunity_booked", "attendances": "booking_attended",
             "cancellations": "booking_cancelled", "redemptions": "credits_redeemed"}
_DESCRIBED_BY = {
    "hours": ("hours_approved",), "credits_earned": ("hours_approved",),
    "credits_spent": ("booking_attended", "credits_redeemed"), "credits_gifted": ("credits_gifted",),
    **{figure: (kind,) for figure, kind in _COUNTERS.items()},
}


#: A bit for each kind a figure describes volunteers by: a volunteer's kinds in a cell are the OR of their rows'.
_KIND_BITS = {"hours_approved": 1, "booking_attended": 2, "credits_redeemed": 4, "credits_gifted": 8,
              "opportunity_booked": 16, "booking_cancelled": 32}


def _bits(kinds: tuple[str, ...]) -> int:
    return sum(_KIND_BITS[kind] for kind in kinds)


#: Active in the three months before a cell starts, in any group (the cells start on the 1st of a month): the
#: months before each cell's start are read once a cell.
_ACTIVE_BEFORE = """
    SELECT c.cell_first, f.volunteer_id COLLATE "C" AS volunteer_id
    FROM (SELECT cell_first FROM in_cells UNION SELECT :start) c
    JOIN stats_months f ON f.kind = 'hours_approved' AND f.month >= (c.cell_first - interval '3 months')::date
                       AND f.month < c.cell_first
    GROUP BY 1, 2
    HAVING sum(f.minutes) > 0"""
#: The same by month: a cell a month would read every month three times, so each volunteer's months are read
#: once and a window adds up the three before each; the total's (the period's start) as above.
_ACTIVE_BEFORE_MONTHS = """
    SELECT month AS cell_first, volunteer_id FROM (
        SELECT month, volunteer_id COLLATE "C" AS volunteer_id,
               sum(sum(minutes)) OVER (PARTITION BY volunteer_id ORDER BY month
                                       RANGE BETWEEN '3 months' PRECEDING AND '1 day' PRECEDING) AS before
        FROM stats_months
        WHERE kind = 'hours_approved' AND month BETWEEN (:start - interval '3 months')::date AND :end
        GROUP BY month, volunteer_id
    ) by_month
    WHERE month > :start AND before > 0
    UNION ALL
    SELECT :start, volunteer_id COLLATE "C" FROM stats_months
    WHERE kind = 'hours_approved' AND month >= (:start - interval '3 months')::date AND month < :start
    GROUP BY volunteer_id
    HAVING sum(minutes) > 0"""


def _statement(group_by: str) -> str:
    key, first, last = _GROUPS[group_by]
    # A volunteer is in one group of a grouping by the registry: their rows are folded first, and the few
    # folded rows placed in their group afterwards, instead of looking every row's volunteer up.
    by_registry = group_by in _NEEDS_REGISTRY
    placed_key = "'-'" if by_registry else key
    bit = "CASE f.kind " + " ".join(f"WHEN '{kind}' THEN {b}" for kind, b in _KIND_BITS.items()) + " ELSE 0 END"
    hours, spent = _bits(("hours_approved",)), _bits(_DESCRIBED_BY["credits_spent"])
    folded = {  # a volunteer's sum of each additive figure in a cell
        "minutes": f"sum(minutes) FILTER (WHERE bit = {hours})",
        "credits_earned": f"sum(amount) FILTER (WHERE bit = {hours})",
        "credits_spent": f"sum(amount) FILTER (WHERE bit & {spent} <> 0)",
        "credits_gifted": f"sum(amount) FILTER (WHERE bit = {_KIND_BITS['credits_gifted']})",
        **{figure: f"sum(net_count) FILTER (WHERE bit = {_KIND_BITS[kind]})" for figure, kind in _COUNTERS.items()},
    }
    in_cell = ",\n        ".join(f"{expression} AS {figure}" for figure, expression in folded.items())
    in_period = ",\n        ".join(f"sum({figure})" for figure in folded)
    summed = ",\n    ".join(f"coalesce(sum(pv.{figure}), 0)::bigint AS {figure}" for figure in folded)
    described = ",\n    ".join(f"count(*) FILTER (WHERE pv.kinds & {_bits(kinds)} <> 0) AS by_{figure}"
                               for figure, kinds in _DESCRIBED_BY.items())
    cell_last = last.replace("f.month", "pv.cell_first") if group_by in ("month", "quarter") else ":end"
    if by_registry:
        rows = (f"SELECT false AS is_total, {key} AS grp, f.cell_first, f.volunteer_id, "
                f"{', '.join(f'f.{figure}' for figure in folded)}, f.kinds "
                "FROM in_cells f LEFT JOIN volunteers v ON v.id = f.volunteer_id")
    else:
        rows = "SELECT false AS is_total, * FROM in_cells WHERE grp IS NOT NULL"
    return f"""
WITH in_cells AS MATERIALIZED (
    -- One row a volunteer a cell: their sums there, and the kinds of their facts.
    SELECT grp, cell_first, volunteer_id,
        {in_cell},
        bit_or(bit) AS kinds
    FROM (
        SELECT f.volunteer_id COLLATE "C" AS volunteer_id, {bit} AS bit, f.amount, f.minutes, f.net_count,
               {placed_key} AS grp, coalesce({first}, :start) AS cell_first
        FROM stats_months f
        WHERE f.month BETWEEN :start AND :end
    ) placed
    GROUP BY grp, cell_first, volunteer_id
), per_volunteer AS (
    {rows}
    UNION ALL
    -- The total's cell is the period: every row of a volunteer, in a group or none.
    SELECT true, NULL, :start, volunteer_id,
        {in_period},
        bit_or(kinds)
    FROM in_cells GROUP BY volunteer_id
), active_before AS (
    {_ACTIVE_BEFORE_MONTHS if group_by == "month" else _ACTIVE_BEFORE}
)
SELECT pv.is_total, pv.grp,
    count(*) AS volunteers,
    count(*) FILTER (WHERE pv.minutes > 0) AS active_volunteers,
    count(*) FILTER (WHERE pv.minutes > 0 AND fh.first_on BETWEEN pv.cell_first
                     AND CASE WHEN pv.is_total THEN :end ELSE {cell_last} END) AS new_volunteers,
    count(*) FILTER (WHERE pv.minutes > 0 AND ab.volunteer_id IS NOT NULL) AS retained_volunteers,
    count(*) FILTER (WHERE pv.minutes > 0 AND r.first_time_volunteer) AS first_time_volunteers,
    {summed},
    {described}
FROM per_volunteer pv
LEFT JOIN active_before ab ON ab.cell_first = pv.cell_first AND ab.volunteer_id = pv.volunteer_id
LEFT JOIN stats_first_hours fh ON fh.volunteer_id = pv.volunteer_id
LEFT JOIN volunteers r ON r.id = pv.volunteer_id
GROUP BY pv.is_total, pv.grp
"""


WORK_MEM = "128MB"
_SETTINGS = text("SELECT set_config('jit', 'off', true), set_config('work_mem', :work_mem, true), "
                 "set_config('enable_mergejoin', 'off', true)").bindparams(work_mem=WORK_MEM)
_STATEMENTS = {group_by: text(_statement(group_by)) for group_by in _GROUPS}
_VOLUNTEER_COUNTS = ("volunteers", "active_volunteers", "new_volunteers", "retained_volunteers",
                     "first_time_volunteers")


@dataclass
class Breakdown:
    """A breakdown's figures by group key, and its total."""

    rows: dict[str, Figures]
    total: Figures


def breakdown(conn: Connection, group_by: str, start: date, end: date) -> Breakdown:
    """Every group's figures and the total for [start, end] (both days included)."""
    rows: dict[str, Figures] = {}
    total = Figures(contributors=dict.fromkeys(_VOLUNTEER_COUNTS, 0))  # a period nobody took part in
    # For this transaction only: JIT compiling the statement costs more than it saves at a breakdown's size, and
    # the planner, overestimating the months before each cell, would turn it on; enough memory to fold a year
    # of a large programme's facts without spilling to disk; and hash joins, since the planner cannot estimate
    # the folded rows and would sort hundreds of thousands of them to merge (docs/design.md §5.3).
    conn.execute(_SETTINGS)
    for row in conn.execute(_STATEMENTS[group_by], {"start": start, "end": end}).mappings():
        figures = _figures(row)
        if row["is_total"]:
            total = figures
        else:
            rows[row["grp"]] = figures
    return Breakdown(rows, total)


def _figures(row: dict) -> Figures:  # type: ignore[type-arg]
    counts = {name: row[name] for name in _VOLUNTEER_COUNTS}
    figures = Figures(**counts, minutes=row["minutes"], credits_earned=row["credits_earned"],
                      credits_spent=row["credits_spent"], credits_gifted=row["credits_gifted"],
                      **{figure: int(row[figure]) for figure in _COUNTERS})
    # A figure nobody is behind names no contributors, as a figure of no fact at all.
    figures.contributors = {**counts, **{figure: row[f"by_{figure}"] for figure in _DESCRIBED_BY
                                         if row[f"by_{figure}"]}}
    return figures
