"""The statistics' rollups as SQL text, the one copy the migration's trigger, `stats.rollups` and the figures share
(docs/design.md §5.2): what a set of facts adds to each row of `stats_cells` and `stats_volunteer_months`.

A row holds, for a volunteer's month (and in `stats_cells` one of the facts' own groups: organisation, partner
category, kind of activity), each figure's sum (reversals less) and, for each kind a figure describes its
volunteers by, the count of facts of either sign: a volunteer a reversal alone is of is still described by it,
and a row whose counts are all none is no row. This module imports nothing: a migration runs it as it stands.
"""
from __future__ import annotations

#: The figures summed in a row: (column, the kinds of fact it sums, what of each fact it sums).
FIGURES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("minutes", ("hours_approved",), "sign * minutes"),
    ("credits_earned", ("hours_approved",), "sign * amount"),
    ("credits_spent", ("booking_attended", "credits_redeemed"), "sign * amount"),
    ("credits_gifted", ("credits_gifted",), "sign * amount"),
    ("bookings", ("opportunity_booked",), "sign"),
    ("attendances", ("booking_attended",), "sign"),
    ("cancellations", ("booking_cancelled",), "sign"),
    ("redemptions", ("credits_redeemed",), "sign"),
)
#: The facts counted in a row, by kind; `kinds` (a generated column) has the bit of each kind counted.
KIND_COUNTS: tuple[tuple[str, str, int], ...] = (
    ("hours_facts", "hours_approved", 1),
    ("attended_facts", "booking_attended", 2),
    ("redeemed_facts", "credits_redeemed", 4),
    ("gifted_facts", "credits_gifted", 8),
    ("booked_facts", "opportunity_booked", 16),
    ("cancelled_facts", "booking_cancelled", 32),
)
OTHER_FACTS = "other_facts"  # facts of the kinds no figure sums (a booking that lapsed or was missed)
BIGINT_FIGURES = frozenset({"credits_earned", "credits_spent", "credits_gifted"})  # hundredths of a credit

#: Both rollups are split by a hash of the volunteer into this many partitions: a breakdown folds each
#: volunteer's rows, and PostgreSQL folds partition by partition, on as many cores as it is given, with hash
#: tables a partition's size (docs/design.md §5.3).
PARTITIONS = 8
PARTITIONED = ("stats_cells", "stats_volunteer_months")

CELL_KEY = ("month", "volunteer_id", "org_id", "category", "activity_category")
MONTH_KEY = ("month", "volunteer_id")
COUNTS = (*(column for column, _, _ in KIND_COUNTS), OTHER_FACTS)
VALUES = (*(column for column, _, _ in FIGURES), *COUNTS)


def _kinds(kinds: tuple[str, ...]) -> str:
    return ", ".join(f"'{kind}'" for kind in kinds)


def delta(source: str, key: tuple[str, ...], weight: int = 1) -> str:
    """What the facts of `source` add (`weight` 1) or take away (-1) to the rows of `key`, in key order."""
    month = "date_trunc('month', occurred_on::timestamp)::date"
    columns = [month if column == "month" else column for column in key]
    figures = [f"({weight} * coalesce(sum({what}) FILTER (WHERE kind IN ({_kinds(kinds)})), 0))"
               f"::{'bigint' if column in BIGINT_FIGURES else 'integer'} AS {column}"
               for column, kinds, what in FIGURES]
    counts = [f"({weight} * count(*) FILTER (WHERE kind = '{kind}'))::integer AS {column}"
              for column, kind, _ in KIND_COUNTS]
    every = _kinds(tuple(kind for _, kind, _ in KIND_COUNTS))
    counts.append(f"({weight} * count(*) FILTER (WHERE kind NOT IN ({every})))::integer AS {OTHER_FACTS}")
    keys = ", ".join(f"{expression} AS {name}" for expression, name in zip(columns, key, strict=True))
    positions = ", ".join(str(n) for n in range(1, len(key) + 1))
    return (f"SELECT {keys}, {', '.join(figures + counts)} FROM {source} "
            f"GROUP BY {positions} ORDER BY {positions}")


def upsert(table: str, constraint: str, key: tuple[str, ...], source: str, weight: int = 1) -> str:
    """Add `source`'s delta to `table`, locking its rows in key order (two writers add to what the other
    committed, and never wait on each other in a circle)."""
    columns = ", ".join((*key, *VALUES))
    added = ", ".join(f"{column} = r.{column} + excluded.{column}" for column in VALUES)
    return (f"INSERT INTO {table} AS r ({columns}) {delta(source, key, weight)} "
            f"ON CONFLICT ON CONSTRAINT {constraint} DO UPDATE SET {added}")


def empty_rows(table: str) -> str:
    """A row all of whose facts were taken away again (an owner's UPDATE or DELETE) is no row."""
    return f"DELETE FROM {table} WHERE " + " AND ".join(f"{column} = 0" for column in COUNTS)


def kinds_column() -> str:
    """The generated `kinds`: a bit for each kind counted in the row."""
    return " | ".join(f"(CASE WHEN {column} > 0 THEN {bit} ELSE 0 END)" for column, _, bit in KIND_COUNTS)


#: Each volunteer-month's previous active month (approved minutes, reversals less, above none): a volunteer is
#: retained in a cell starting on the 1st of month c when they were active in one of the three months before c
#: (docs/design.md §5.3), which this makes a look at the cell's own rows.
PREVIOUS_ACTIVE_WINDOW = ("max(month) FILTER (WHERE minutes > 0) OVER (PARTITION BY volunteer_id ORDER BY month "
                          "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)")


def months_with_previous(source: str) -> str:
    """The rows of `stats_volunteer_months` the facts of `source` give, each with its previous active month."""
    return f"SELECT m.*, {PREVIOUS_ACTIVE_WINDOW} AS prev_active FROM ({delta(source, MONTH_KEY)}) m"


def set_previous_active(source: str) -> str:
    """Put right the previous active month of the months the facts of `source` (volunteer_id, occurred_on) may
    have changed it for: each of their volunteers' months from the earliest of theirs in `source` on, each
    looked up by the volunteer's index (a statement's volunteers' whole histories would be read otherwise)."""
    return f"""UPDATE stats_volunteer_months t SET prev_active = p.prev_active
        FROM (
            SELECT r.volunteer_id, r.month, r.prev_active AS held,
                   (SELECT max(s.month) FROM stats_volunteer_months s
                    WHERE s.volunteer_id = r.volunteer_id AND s.month < r.month AND s.minutes > 0) AS prev_active
            FROM (SELECT volunteer_id, min(date_trunc('month', occurred_on::timestamp)::date) AS first_month
                  FROM {source} GROUP BY volunteer_id) n
            JOIN stats_volunteer_months r ON r.volunteer_id = n.volunteer_id AND r.month >= n.first_month
        ) p
        WHERE t.volunteer_id = p.volunteer_id AND t.month = p.month AND p.prev_active IS DISTINCT FROM p.held"""
