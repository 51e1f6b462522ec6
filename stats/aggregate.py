"""A breakdown's figures, aggregated by PostgreSQL in two or three statements whatever the programme's size.

The rules are those of docs/design.md §5.3, in SQL:
- a *cell* is a group's facts in its period: the breakdown's period, or for a month or a quarter, that month or
  quarter; the total is the cell of every fact in the period, groups or none;
- *volunteers* are those with any fact in the cell; *active* ones have approved minutes adding up to more than
  nothing there (an approval less its reversal is none);
- *new* active volunteers have their first approved hours never reversed in the cell's period
  (`stats_first_hours`);
- *retained* active volunteers were also active, in any group, in the three months before the cell starts;
- *first-time* active volunteers said at sign-up that they had never volunteered;
- every other figure sums the facts' signed amounts, minutes or counts, and the contributors to each figure are
  the distinct volunteers whose facts it sums.

The statements read the rollups PostgreSQL keeps from the facts (migration 0023, stats/rollup_sql.py): periods
are whole months, so nothing finer is needed. `stats_volunteer_months` has a row a volunteer a month, a figure a
column: unfolded, it is the month breakdown's cells; folded into a row a volunteer, the total's and the
registry's. `stats_cells` adds the facts' own groups (organisation, category, kind of activity). Counting a
cell's volunteers needs each volunteer's rows there folded into one; its sums only its rows added up, so the two
are read apart, and the rollups' partitions by volunteer let PostgreSQL fold each partition on its own, in
parallel. Retention needs no look back: each volunteer-month knows the volunteer's previous active month
(`prev_active`), and since a reversal carries its original's day no month's minutes are below none, so "active
in the three months before c" is "some row of the cell, from c on, whose previous active month is one of those
three" (the first such row's previous active month is the last before c).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, TextClause, text

from stats.model import Figures
from stats.rollup_sql import FIGURES, KIND_COUNTS

#: The cells' group key over `stats_cells` (f) or over a volunteer's row of the registry (e, as it is now: a
#: withdrawn consent takes effect for every figure computed afterwards, docs/design.md §5.7).
_CELL_KEYS = {
    "org": "f.org_id",
    "category": "f.category",
    # Hours recorded before there were kinds of activity count as "other"; spending and gifts have no kind (a
    # row's facts with no figure, a booking that lapsed, change no figure of the row's hours).
    "activity": "CASE WHEN f.hours_facts > 0 THEN coalesce(f.activity_category, 'other') END",
}
_REGISTRY_KEYS = {
    "area": "coalesce(e.area, 'unknown')",
    "age_band": "CASE WHEN e.consent_stats THEN coalesce(e.age_band, 'not_given') ELSE 'undisclosed' END",
    "seb": "CASE WHEN e.consent_stats THEN coalesce(e.seb, 'not_given') ELSE 'undisclosed' END",
}

_SUMS = tuple(column for column, _, _ in FIGURES)
_BITS = {kind: bit for _, kind, bit in KIND_COUNTS}
#: The kinds whose volunteers each figure describes.
_DESCRIBED_BY = {column: kinds for column, kinds, _ in FIGURES}
_DESCRIBED_BY["hours"] = _DESCRIBED_BY.pop("minutes")
_COUNTERS = ("bookings", "attendances", "cancellations", "redemptions")


def _bits(kinds: tuple[str, ...]) -> int:
    return sum(_BITS[kind] for kind in kinds)


def _summed(row: str) -> list[str]:
    return [f"coalesce(sum({row}.{column}), 0)::bigint AS {column}" for column in _SUMS]


def _counted(row: str, new: str, retained: str, first_time: str) -> str:
    """A cell's counts of volunteers from its rows, one a volunteer (`row`: their minutes and kinds there), and
    what makes such a volunteer new, retained and first-time there."""
    active = f"{row}.minutes > 0"
    return ",\n    ".join([
        "count(*) AS volunteers",
        f"count(*) FILTER (WHERE {active}) AS active_volunteers",
        f"count(*) FILTER (WHERE {active} AND {new}) AS new_volunteers",
        f"count(*) FILTER (WHERE {active} AND {retained}) AS retained_volunteers",
        f"count(*) FILTER (WHERE {active} AND {first_time}) AS first_time_volunteers",
        *(f"count(*) FILTER (WHERE {row}.kinds & {_bits(kinds)} <> 0) AS by_{figure}"
          for figure, kinds in _DESCRIBED_BY.items()),
    ])


#: A volunteer's rows folded for counting: whether they were active (their minutes) and the kinds of their facts.
_FOLDED_FOR_COUNTS = "sum({row}minutes) AS minutes, bit_or({row}kinds) AS kinds"
_FOLDED = ", ".join([*(f"sum({column}) AS {column}" for column in _SUMS), "bit_or(kinds) AS kinds"])
#: Active in the three months before the period's start (or a quarter's), from the rows of the cell themselves:
#: months are 89 to 92 days apart when three, 120 or more when four.
_WAS_ACTIVE = "coalesce(bool_or(prev_active < {start} AND {start} - prev_active <= 92), false)"


def _everyone(folded: str) -> str:
    """One row a volunteer with any fact in the period: `folded` (their rows folded), whether they were active in
    the three months before it, whether they are new in it, and the registry's word on them."""
    return f"""(
    SELECT t.*, coalesce(fh.first_on BETWEEN :start AND :end, false) AS is_new,
           coalesce(r.first_time_volunteer, false) AS first_time, r.area, r.age_band, r.seb, r.consent_stats
    FROM (
        SELECT volunteer_id, {folded}, {_WAS_ACTIVE.format(start="CAST(:start AS date)")} AS was_active
        FROM stats_volunteer_months WHERE month BETWEEN :start AND :end
        GROUP BY volunteer_id
    ) t
    LEFT JOIN stats_first_hours fh ON fh.volunteer_id = t.volunteer_id
    LEFT JOIN volunteers r ON r.id = t.volunteer_id
) e"""


_EVERYONE_COUNTED = _counted("e", "e.is_new", "e.was_active", "e.first_time")
#: The total's counts of volunteers.
_TOTAL_COUNTS = f"SELECT {_EVERYONE_COUNTED} FROM {_everyone(_FOLDED_FOR_COUNTS.format(row=''))}"


def _registry_statement(key: str) -> str:
    """A grouping by the registry: every group, a volunteer being in exactly one (so the groups add up to the
    total, docs/design.md §5.3)."""
    return (f"SELECT {key} AS grp, {_EVERYONE_COUNTED}, {', '.join(_summed('e'))} "
            f"FROM {_everyone(_FOLDED)} GROUP BY 1")


_REGISTRY_JOINS = """
LEFT JOIN stats_first_hours fh ON fh.volunteer_id = c.volunteer_id
LEFT JOIN volunteers r ON r.id = c.volunteer_id"""
_FIRST_TIME = "r.first_time_volunteer"
#: A first day at most 27 days after a month's 1st is in the month (88 for a quarter's); only a later one needs
#: its month or quarter worked out.
_FIRST_IN = ("{first} >= {cell} AND ({first} - {cell} < {days} OR "
             "date_trunc('{unit}', {first}::timestamp)::date = {cell})")


def _month_statement() -> str:
    """By month: a volunteer's month is their row of the cell, nothing to fold; counts and sums in one read."""
    counted = _counted("c", _FIRST_IN.format(first="fh.first_on", cell="c.month", unit="month", days=28),
                       "c.month - c.prev_active <= 92", _FIRST_TIME)
    return f"""
SELECT c.month AS grp, {counted}, {', '.join(_summed('c'))}
FROM stats_volunteer_months c{_REGISTRY_JOINS}
WHERE c.month BETWEEN :start AND :end
GROUP BY c.month"""


def _quarter_counts(clipped: bool) -> str:
    """By quarter: a volunteer's months folded into their quarters. A quarter the period starts inside of starts
    before the period's first row, so the three months before the quarter are read for it (docs/design.md §5.3)."""
    retained, joined = "c.retained", ""
    if clipped:
        retained = "CASE WHEN c.grp < :start THEN b.volunteer_id IS NOT NULL ELSE c.retained END"
        joined = f"""
LEFT JOIN ({_active_before("date_trunc('quarter', CAST(:start AS timestamp))::date")}) b
    ON c.grp < :start AND b.volunteer_id = c.volunteer_id"""
    counted = _counted("c", _FIRST_IN.format(first="fh.first_on", cell="c.grp", unit="quarter", days=89), retained,
                       _FIRST_TIME)
    return f"""
SELECT c.grp, {counted}
FROM (
    SELECT quarter AS grp, volunteer_id, {_FOLDED_FOR_COUNTS.format(row='')},
           {_WAS_ACTIVE.format(start="quarter")} AS retained
    FROM stats_volunteer_months WHERE month BETWEEN :start AND :end
    GROUP BY quarter, volunteer_id
) c{_REGISTRY_JOINS}{joined}
GROUP BY c.grp"""


def _active_before(start: str) -> str:
    """Volunteers with approved minutes (reversals less) above none in the three months before `start`."""
    return f"""
    SELECT volunteer_id FROM stats_volunteer_months
    WHERE month >= ({start} - interval '3 months')::date AND month < {start}
    GROUP BY volunteer_id HAVING sum(minutes) > 0"""


_QUARTER_SUMS = (f"SELECT m.quarter AS grp, {', '.join(_summed('m'))} FROM stats_volunteer_months m "
                 "WHERE m.month BETWEEN :start AND :end GROUP BY 1")


def _cell_counts(key: str) -> str:
    """By the facts' own groups: a volunteer's rows of a group folded; the cells start with the period."""
    counted = _counted("c", "fh.first_on BETWEEN :start AND :end", "b.volunteer_id IS NOT NULL", _FIRST_TIME)
    return f"""
SELECT c.grp, {counted}
FROM (
    SELECT {key} AS grp, f.volunteer_id, {_FOLDED_FOR_COUNTS.format(row='f.')}
    FROM stats_cells f WHERE f.month BETWEEN :start AND :end AND {key} IS NOT NULL
    GROUP BY 1, 2
) c{_REGISTRY_JOINS}
LEFT JOIN ({_active_before("CAST(:start AS date)")}) b ON b.volunteer_id = c.volunteer_id
GROUP BY c.grp"""


def _cell_sums(key: str) -> str:
    """Each group's sums, and (grp NULL) those of the rows in no group: all of them add up to the total's."""
    return (f"SELECT {key} AS grp, {', '.join(_summed('f'))} FROM stats_cells f "
            "WHERE f.month BETWEEN :start AND :end GROUP BY 1")


WORK_MEM = "128MB"
#: For a breakdown's transaction only (docs/design.md §5.3): JIT compiling a statement costs more than it saves
#: at a breakdown's size; enough memory to fold a year of a large programme's rows without spilling to disk;
#: hash joins, since the planner cannot estimate the folded rows and would sort or loop over hundreds of
#: thousands of them; the rollups read as the cached tables they are on a server in use, so that a period's rows
#: are read by their index rather than by scanning ten years of them; and each partition of the rollups folded
#: on its own, in parallel.
_SESSION = {"jit": "off", "work_mem": WORK_MEM, "enable_mergejoin": "off", "enable_nestloop": "off",
            "random_page_cost": "1.1", "enable_partitionwise_aggregate": "on", "enable_partitionwise_join": "on"}
_SETTINGS = text("SELECT " + ", ".join(f"set_config('{name}', '{value}', true)" for name, value in _SESSION.items()))


@dataclass(frozen=True)
class _Statements:
    """How a grouping is read: its cells' counts, and their sums (None: the counts' statement gives them too);
    and whether its total is the cells added up, a volunteer being in exactly one group (else the total's counts
    are read by a statement of their own, and its sums are the period's rows added up)."""

    counts: TextClause
    sums: TextClause | None = None
    added_up: bool = False


_STATEMENTS: dict[tuple[str, bool], _Statements] = {
    **{(group_by, False): _Statements(text(_registry_statement(key)), added_up=True)
       for group_by, key in _REGISTRY_KEYS.items()},
    **{(group_by, False): _Statements(text(_cell_counts(key)), text(_cell_sums(key)))
       for group_by, key in _CELL_KEYS.items()},
    ("month", False): _Statements(text(_month_statement())),
    **{("quarter", clipped): _Statements(text(_quarter_counts(clipped)), text(_QUARTER_SUMS))
       for clipped in (False, True)},
}
_TOTAL_COUNTS_STATEMENT = text(_TOTAL_COUNTS)
_VOLUNTEER_COUNTS = ("volunteers", "active_volunteers", "new_volunteers", "retained_volunteers",
                     "first_time_volunteers")


@dataclass
class Breakdown:
    """A breakdown's figures by group key, and its total."""

    rows: dict[str, Figures]
    total: Figures


def breakdown(conn: Connection, group_by: str, start: date, end: date) -> Breakdown:
    """Every group's figures and the total for [start, end] (both days included).

    Two or three statements, each planned on its own so that PostgreSQL may read it with parallel workers: a
    cell's counts of volunteers need each volunteer's rows folded, its sums only its rows added up. The total's
    sums are the groups' added up (every row of the period is in one group, or in the rows of no group, which the
    sums read too); its counts are too when a volunteer is in exactly one group, else read on their own."""
    conn.execute(_SETTINGS)
    period = {"start": start, "end": end}
    statements = _STATEMENTS[group_by, group_by == "quarter" and start.month % 3 != 1]
    counted = {row["grp"]: dict(row) for row in conn.execute(statements.counts, period).mappings()}
    summed = counted if statements.sums is None else {
        row["grp"]: dict(row) for row in conn.execute(statements.sums, period).mappings()}
    rows = {_label(group, group_by): _figures(row | summed[group]) for group, row in counted.items()}
    if statements.added_up:
        return Breakdown(rows, _added_up(rows.values()))
    total = conn.execute(_TOTAL_COUNTS_STATEMENT, period).mappings().one()
    if not total["volunteers"]:
        return Breakdown(rows, _nobody())
    sums = {column: sum(int(row[column]) for row in summed.values()) for column in _SUMS}
    return Breakdown(rows, _figures({**total, **sums}))


def _nobody() -> Figures:
    return Figures(contributors=dict.fromkeys(_VOLUNTEER_COUNTS, 0))  # a period nobody took part in


def _added_up(groups: Iterable[Figures]) -> Figures:
    """The total of groups no volunteer is in two of."""
    total = _nobody()
    for figures in groups:
        for name in (*_VOLUNTEER_COUNTS, *_SUMS):
            setattr(total, name, getattr(total, name) + getattr(figures, name))
        for name, count in figures.contributors.items():
            total.contributors[name] = total.contributors.get(name, 0) + count
    return total


def _label(group: object, group_by: str) -> str:
    """A month's or a quarter's key from its first day ('2026-07', '2026-Q3'); other groups are their own key."""
    if isinstance(group, date):
        return f"{group:%Y-%m}" if group_by == "month" else f"{group.year}-Q{(group.month - 1) // 3 + 1}"
    return str(group)


def _figures(row: dict) -> Figures:  # type: ignore[type-arg]
    counts = {name: row[name] for name in _VOLUNTEER_COUNTS}
    figures = Figures(**counts, minutes=row["minutes"], credits_earned=row["credits_earned"],
                      credits_spent=row["credits_spent"], credits_gifted=row["credits_gifted"],
                      **{figure: int(row[figure]) for figure in _COUNTERS})
    # A figure nobody is behind names no contributors, as a figure of no fact at all.
    figures.contributors = {**counts, **{figure: row[f"by_{figure}"] for figure in _DESCRIBED_BY
                                         if row[f"by_{figure}"]}}
    return figures
