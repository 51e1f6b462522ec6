"""Figure 5: every breakdown of a programme of 100,000 volunteers over ten years, beside the scan ceiling.

The facts are written straight into `stats_facts` (one row an entry, as the statistics consumer writes them),
by an INSERT … SELECT of generated rows a year, the same every run (`setseed`), and the rollups the figures read
are then worked out from them (`stats.rollups.rebuild`): pushing ten years of a large programme through the pipeline would take hours and measure the
ingest, which figures 1–2 already do. The registry (volunteers, organisations, areas) is written the same way.

- A volunteer joins in a random month of the ten years and takes part for a spell of about four years on
  average; in about three months of five within it they give one to three sessions of hours (half an hour to
  four hours each, in one of 60 community organisations and one of the kinds of activity); about one month in
  four they book a place with one of 40 partners and attend it (one in seven cancel), about one in eight they
  redeem credits, and one in forty they gift some; one approval in a hundred is reversed.
- Areas (200) are skewed, so that some are busy and some nearly empty; 70 % consent to demographic statistics.

Each breakdown is asked through `stats.queries.participation`, the function the API calls, once to warm the
cache and then `repeats` times; the figure is the slowest of those. The ceiling is PostgreSQL reading every
fact of the same period once and summing a column (`count(*), sum(minutes)`), the least any breakdown of it
must do.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from rich.table import Table
from sqlalchemy import Engine, text

from stats import rollups
from stats.model import GROUPINGS
from stats.queries import cold_spots, months_before, participation

VOLUNTEERS = 100_000
YEARS = 10

_REGISTRY = """
INSERT INTO areas (code, name, need_decile, population, source)
    SELECT 'B' || lpad(n::text, 8, '0'), 'Area ' || n, 1 + n % 10, 1500 + (n * 37) % 2000, 'benchmark (synthetic)'
    FROM generate_series(1, 200) n;
INSERT INTO organisations (id, name, area, kinds, auto_approve)
    SELECT 'club-' || n, 'Club ' || n, 'B' || lpad((1 + n % 200)::text, 8, '0'), ARRAY['community'], true
    FROM generate_series(1, 60) n
    UNION ALL
    SELECT 'partner-' || n, 'Partner ' || n, 'B' || lpad((1 + n % 200)::text, 8, '0'), ARRAY['partner'], false
    FROM generate_series(1, 40) n;
INSERT INTO volunteers (id, area, age_band, seb, consent_stats, first_time_volunteer)
    SELECT 'bv-' || n, 'B' || lpad((1 + floor(200 * power(random(), 2)))::int::text, 8, '0'),
           (ARRAY['16-24', '25-34', '35-44', '45-54', '55-64', '65+'])[1 + floor(random() * 6)::int],
           (ARRAY['professional', 'intermediate', 'lower', 'other', 'prefer_not_to_say'])[1 + floor(random() * 5)::int],
           random() < 0.7, random() < 0.3
    FROM generate_series(1, :volunteers) n;
"""

#: One statement for one year of the ten: months [:first, :last) counted from :origin.
_FACTS = """
WITH spells AS (
    -- The same spell for a volunteer in every year's statement: drawn from their number, not from random().
    SELECT 'bv-' || n AS volunteer, abs(hashtext('joined ' || n)) % :months AS joined,
           1 + floor(-ln(1 - (abs(hashtext('spell ' || n)) % 1000000) / 1000000.0) * 48)::int AS spell, n
    FROM generate_series(1, :volunteers) n
), months AS (
    SELECT s.volunteer, s.n, m AS month, random() AS r
    FROM spells s, generate_series(s.joined, least(:months - 1, s.joined + s.spell - 1)) m
    WHERE m >= :first AND m < :last
), facts AS (
    -- Mostly at their own organisation, doing their usual kind of activity, as weekly volunteering goes.
    SELECT m.volunteer, 'hours_approved' AS kind, (:origin + m.month * interval '1 month')::date
               + floor(random() * 28)::int AS day,
           'club-' || (1 + CASE WHEN random() < 0.8 THEN m.n ELSE m.n + k END % 60) AS org, NULL AS category,
           (ARRAY['befriending', 'food_and_essentials', 'environment', 'sport_and_wellbeing', 'arts_and_culture',
                  'other'])[1 + CASE WHEN random() < 0.8 THEN m.n ELSE m.n + k END % 6] AS activity,
           30 * (1 + floor(random() * 8)::int) AS minutes
    FROM months m, generate_series(1, 1 + (m.n + m.month) % 4) k
    WHERE m.r < 0.6
    UNION ALL
    SELECT m.volunteer, kind, (:origin + m.month * interval '1 month')::date + floor(random() * 28)::int,
           'partner-' || (1 + m.n % 40), (ARRAY['sport', 'culture', 'course', 'training'])[1 + m.n % 4], NULL, 0
    FROM months m, LATERAL (VALUES ('opportunity_booked'), (CASE WHEN (m.n + m.month) % 7 = 0 THEN 'booking_cancelled'
                                                               ELSE 'booking_attended' END)) AS k(kind)
    WHERE m.r >= 0.6 AND m.r < 0.85
    UNION ALL
    SELECT m.volunteer, 'credits_redeemed', (:origin + m.month * interval '1 month')::date + 3,
           'partner-' || (1 + (m.n * 7) % 40), 'culture', NULL, 0
    FROM months m WHERE m.r >= 0.85 AND m.r < 0.975
    UNION ALL
    SELECT m.volunteer, 'credits_gifted', (:origin + m.month * interval '1 month')::date + 9, NULL, NULL, NULL, 0
    FROM months m WHERE m.r >= 0.975
)
INSERT INTO stats_facts (entry_id, kind, occurred_on, volunteer_id, org_id, category, activity_category, amount,
                         minutes, sign)
SELECT :base + row_number() OVER (), kind, day, volunteer, org, category, activity,
       CASE WHEN kind = 'hours_approved' THEN minutes * 100 / 60 ELSE 100 * (1 + floor(random() * 5)::int) END,
       minutes, 1
FROM facts
"""

_REVERSALS = """
INSERT INTO stats_facts (entry_id, kind, occurred_on, volunteer_id, org_id, category, activity_category, amount,
                         minutes, sign, original_entry_id)
SELECT :base + row_number() OVER (), kind, occurred_on, volunteer_id, org_id, category, activity_category, amount,
       minutes, -1, entry_id
FROM stats_facts WHERE kind = 'hours_approved' AND entry_id % 100 = 7
"""


@dataclass(frozen=True)
class Timing:
    name: str
    seconds: list[float]

    @property
    def slowest(self) -> float:
        return max(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass(frozen=True)
class FactWrites:
    """Batches of facts written as the statistics worker writes them, into the programme, with the rollups' trigger
    and (the ceiling) into a copy of the table with no trigger."""

    batches: int
    size: int
    seconds: float
    ceiling_seconds: float

    @property
    def per_second(self) -> float:
        return self.batches * self.size / self.seconds

    @property
    def ceiling_per_second(self) -> float:
        return self.batches * self.size / self.ceiling_seconds


@dataclass(frozen=True)
class StatisticsResult:
    volunteers: int
    facts: int
    period: tuple[date, date]
    facts_in_period: int
    load_seconds: float
    ceiling: Timing
    breakdowns: list[Timing]
    writes: FactWrites


#: A batch of facts of the month `:month`, of random volunteers, as the statistics worker writes a batch: one
#: INSERT, so one run of the statement-level trigger.
_BATCH = """
INSERT INTO {table} (entry_id, kind, occurred_on, volunteer_id, org_id, category, activity_category, amount,
                         minutes, sign)
SELECT :base + n, k.kind, :month + floor(random() * 28)::int, 'bv-' || (1 + floor(random() * :volunteers)::int),
       CASE WHEN k.kind = 'hours_approved' THEN 'club-' || (1 + n % 60) ELSE 'partner-' || (1 + n % 40) END,
       CASE WHEN k.kind = 'hours_approved' THEN NULL ELSE 'culture' END,
       CASE WHEN k.kind = 'hours_approved' THEN 'befriending' END, 100, CASE WHEN k.kind = 'hours_approved' THEN 60
       ELSE 0 END, 1
FROM generate_series(1, :size) n,
     LATERAL (SELECT CASE WHEN n % 5 < 3 THEN 'hours_approved' WHEN n % 5 = 3 THEN 'opportunity_booked'
                          ELSE 'credits_redeemed' END AS kind) k
"""


def time_fact_writes(engine: Engine, volunteers: int, month: date, batches: int = 20,
                     size: int = 500) -> FactWrites:
    """`batches` batches of `size` facts written a transaction each, with the rollups' trigger; then the same into
    a copy of `stats_facts` (its columns, constraints and indexes) with no trigger, dropped afterwards: the
    ceiling, PostgreSQL storing the facts alone."""
    def write(table: str, base: int) -> float:
        started = time.perf_counter()
        for batch in range(batches):
            with engine.begin() as conn:
                conn.execute(text(_BATCH.format(table=table)), {"base": base + batch * size, "month": month,
                                                               "volunteers": volunteers, "size": size})
        return time.perf_counter() - started

    with engine.begin() as conn:
        base = int(conn.execute(text("SELECT coalesce(max(entry_id), 0) FROM stats_facts")).scalar_one())
        conn.execute(text("CREATE TABLE bench_facts_ceiling (LIKE stats_facts INCLUDING ALL)"))
    try:
        seconds = write("stats_facts", base)
        ceiling = write("bench_facts_ceiling", base)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE bench_facts_ceiling"))
    return FactWrites(batches, size, seconds, ceiling)


def load_programme(engine: Engine, volunteers: int, years: int, end: date,
                   progress: Callable[[str], None] = lambda _: None, *, bulk: bool = True) -> tuple[int, float]:
    """Write the programme's registry and ten years of facts ending with the month `end` falls in; returns
    (facts, seconds). `bulk=False` leaves the rollups to the trigger, a year's statement at a time."""
    months = years * 12
    origin = months_before(date(end.year, end.month, 1), months - 1)
    started = time.perf_counter()
    with engine.begin() as conn:
        # Written as one bulk load, the rollups are then worked out once from all the facts (stats/rollups.py)
        # rather than by the trigger a statement at a time: the same rows, in a fraction of the time.
        if bulk:
            conn.execute(text("ALTER TABLE stats_facts DISABLE TRIGGER stats_facts_added"))
        conn.execute(text("SELECT setseed(0.6)"))
        for statement in filter(str.strip, _REGISTRY.split(";\n")):
            conn.execute(text(statement), {"volunteers": volunteers})
    base = 0
    for year in range(years):
        with engine.begin() as conn:
            conn.execute(text("SELECT setseed(:seed)"), {"seed": (year + 1) / (years + 1)})
            conn.execute(text(_FACTS), {"volunteers": volunteers, "months": months, "first": year * 12,
                                         "last": (year + 1) * 12, "origin": origin, "base": base})
            base = int(conn.execute(text("SELECT coalesce(max(entry_id), 0) FROM stats_facts")).scalar_one())
        progress(f"  year {year + 1} of {years}: {base:,} facts")
    with engine.begin() as conn:
        conn.execute(text(_REVERSALS), {"base": base})
        if bulk:
            conn.execute(text("ALTER TABLE stats_facts ENABLE TRIGGER stats_facts_added"))
            rollups.rebuild(conn)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE stats_facts"))
        for table in ("stats_cells", "stats_volunteer_months", "stats_first_hours"):
            conn.execute(text(f"VACUUM ANALYZE {table}"))
        conn.execute(text("ANALYZE volunteers"))
        facts = int(conn.execute(text("SELECT count(*) FROM stats_facts")).scalar_one())
    return facts, time.perf_counter() - started


def _timed(name: str, call: Callable[[], object], repeats: int) -> Timing:
    call()  # warm: the figure is a dashboard's load once its data is in memory, as it is on a used server
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return Timing(name, seconds)


def run_statistics(engine: Engine, start: date, end: date, *, volunteers: int = VOLUNTEERS, years: int = YEARS,
                   repeats: int = 3, progress: Callable[[str], None] = lambda _: None) -> StatisticsResult:
    """Load the programme into the empty, migrated database of `engine`, then time every breakdown of
    [start, end] (whole months) and the scan ceiling of the same period."""
    facts, load_seconds = load_programme(engine, volunteers, years, end, progress)

    def scan() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*), sum(minutes) FROM stats_facts "
                                         "WHERE occurred_on BETWEEN :start AND :end"),
                                    {"start": start, "end": end}).one()[0])

    in_period = scan()
    ceiling = _timed("scan", scan, repeats)
    timings = [_timed(group_by, lambda g=group_by: participation(engine, g, start, end), repeats)  # type: ignore[misc]
               for group_by in GROUPINGS]
    timings.append(_timed("cold spots", lambda: cold_spots(engine, start, end), repeats))
    writes = time_fact_writes(engine, volunteers, date(end.year, end.month, 1))
    return StatisticsResult(volunteers, facts, (start, end), in_period, load_seconds, ceiling, timings, writes)


#: docs/performance.md's target for figure 5.
TARGET_SECONDS = 1.0


def statistics_table(result: StatisticsResult) -> Table:
    start, end = result.period
    table = Table(title=f"5. statistics: {result.volunteers:,} volunteers, {result.facts:,} facts over ten years; "
                        f"{start:%d %b %Y} to {end:%d %b %Y}: {result.facts_in_period:,} facts")
    table.add_column("breakdown")
    table.add_column("slowest of runs", justify="right")
    table.add_column("median", justify="right")
    table.add_column("÷ scan ceiling", justify="right")
    table.add_column("target", justify="right")
    ceiling = result.ceiling.median
    table.add_row("ceiling: the period's facts read once (count, sum)", f"{result.ceiling.slowest:.3f} s",
                  f"{ceiling:.3f} s", "1", "")
    for timing in result.breakdowns:
        met = "met" if timing.slowest < TARGET_SECONDS else "not met"
        table.add_row(timing.name, f"{timing.slowest:.3f} s", f"{timing.median:.3f} s",
                      f"{timing.median / ceiling:.1f}", f"< {TARGET_SECONDS:.0f} s: {met}")
    writes = result.writes
    table.add_row(f"facts written, {writes.batches} transactions of {writes.size}, the trigger keeping the rollups",
                  f"{writes.per_second:,.0f} facts/s", "",
                  f"{writes.per_second / writes.ceiling_per_second:.2f} of the next", "")
    table.add_row("ceiling: the same facts into an empty copy of the table, no trigger", f"{writes.ceiling_per_second:,.0f} facts/s",
                  "", "", "")
    table.caption = f"programme loaded in {result.load_seconds:.0f} s (not a figure: the facts are generated)"
    return table
