"""Participation figures and cold spots, from the facts and the registry.

PostgreSQL aggregates the facts (stats/aggregate.py); here the rows get their labels and order, and cold spots
their ranks.
"""
from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Engine, select

from ledger.pg import schema
from stats.aggregate import breakdown
from stats.model import ACTIVITY_LABELS, GROUPINGS, ColdSpot, Participation, Row
from stats.suppression import protect

SEB_LABELS = {
    "professional": "Professional background",
    "intermediate": "Intermediate background",
    "lower": "Lower socio-economic background",
    "other": "Other (retired, not applicable, don't know)",
    "prefer_not_to_say": "Prefer not to say",
}
UNDISCLOSED = "undisclosed"  # volunteers who did not consent to demographic statistics
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def months_before(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def quarter_of(day: date) -> tuple[date, date]:
    first = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    return first, months_before(first, -3) - timedelta(days=1)


def last_twelve_months(today: date) -> tuple[date, date]:
    """The last twelve whole months before `today`'s: the dashboard's first choice (docs/design.md §5.3)."""
    this_month = date(today.year, today.month, 1)
    return months_before(this_month, 12), this_month - timedelta(days=1)


def parse_period(text: str) -> tuple[date, date]:
    """'2026-Q3', '2026-07' or '2026' -> (first day, last day)."""
    text = text.strip().upper()
    try:
        if len(text) == 7 and text[4:6] == "-Q" and text[6] in "1234":
            return quarter_of(date(int(text[:4]), 3 * (int(text[6]) - 1) + 1, 1))
        if len(text) == 7 and text[4] == "-" and text[5:].isdigit():
            first = date(int(text[:4]), int(text[5:]), 1)
            return first, months_before(first, -1) - timedelta(days=1)
        if len(text) == 4 and text.isdigit():
            return date(int(text), 1, 1), date(int(text), 12, 31)
    except ValueError:
        pass
    raise ValueError(f"not a period: {text!r} (use 2026-Q3, 2026-07 or 2026)")


class NotWholePeriods(ValueError):
    """A period that does not start on the 1st of a month and end on the last day of a month."""


WHOLE_PERIODS_MESSAGE = ("Statistics cover whole months only: start on the 1st of a month and end on the last day "
                         "of a month, for example from 2026-07-01 to 2026-09-30")


def whole_months(start: date, end: date) -> bool:
    """Whether [start, end] (both days included) is made of whole calendar months."""
    return start.day == 1 and (end == date.max or (end + timedelta(days=1)).day == 1) and start <= end


def require_whole_months(start: date, end: date) -> None:
    """Figures for part of a month could be differenced, day by day, down to one person (docs/design.md §5.3)."""
    if not whole_months(start, end):
        raise NotWholePeriods(WHOLE_PERIODS_MESSAGE)


def _label(group: str, group_by: str, org_names: dict[str, str], area_names: dict[str, str]) -> str:
    if group_by == "month":
        return f"{MONTHS[int(group[5:]) - 1]} {group[:4]}"
    if group_by == "quarter":
        return f"{group[:4]} {group[5:]}"
    if group_by == "org":
        return org_names.get(group, group)
    if group_by == "area":
        return area_names.get(group, group)
    if group_by == "seb":
        return SEB_LABELS.get(group, group.replace("_", " "))
    if group_by == "activity":
        return ACTIVITY_LABELS.get(group, group.replace("_", " "))
    return group.replace("_", " ")


def participation(engine: Engine, group_by: str, start: date, end: date) -> Participation:
    """A breakdown of [start, end] by `group_by`: two statements, whatever the programme's size (stats/aggregate.py)."""
    if group_by not in GROUPINGS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPINGS)}")
    if end < start:
        raise ValueError("the period ends before it starts")
    require_whole_months(start, end)
    o, a = schema.organisations, schema.areas
    with engine.connect() as conn:
        figures = breakdown(conn, group_by, start, end)
        org_names: dict[str, str] = {}
        org_kinds: dict[str, list[str]] = {}
        area_names: dict[str, str] = {}
        if group_by == "org" and figures.rows:
            for org in conn.execute(select(o.c.id, o.c.name, o.c.kinds).where(o.c.id.in_(list(figures.rows)))):
                org_names[org.id], org_kinds[org.id] = org.name, sorted(org.kinds)
        elif group_by == "area" and figures.rows:
            area_names = dict(conn.execute(select(a.c.code, a.c.name).where(a.c.code.in_(list(figures.rows)))).all())
    rows = [Row(group, _label(group, group_by, org_names, area_names), figures.rows[group],
                org_kinds.get(group, []) if group_by == "org" else []) for group in sorted(figures.rows)]
    return Participation(group_by, start, end, rows, figures.total)


#: How the cold score is worked out, in words for a programme lead: the dashboard and the report show it.
COLD_SPOT_METHOD = (
    "Areas are ranked by cold score = need × (1 − participation index), where need is 1.0 for need decile 1 "
    "(the most deprived tenth of areas) down to 0.1 for decile 10, and the participation index is an area’s "
    "active volunteers per resident relative to the best-served area whose count is shown: the higher the "
    "score, the colder the spot. Areas whose count is withheld (fewer than 5 active volunteers, or hidden so "
    "that such a count cannot be worked out) are not ranked."
)


def synthetic_source(source: str) -> bool:
    """Whether an area's figures are made up (the demo's sample areas say so in their source), not official."""
    return "synthetic" in source.lower()


def area_sources(engine: Engine) -> list[str]:
    """Where the areas' need deciles and populations come from, as their import said."""
    a = schema.areas
    with engine.connect() as conn:
        return sorted({s for s in conn.execute(select(a.c.source).distinct()).scalars() if s})


def cold_spots(engine: Engine, start: date, end: date) -> list[ColdSpot]:
    """Areas ranked by need against participation per resident: the coldest (high need, few taking part) first.

    cold_score = need x (1 - participation index), where need = (11 - decile) / 10 (decile 1, the most
    deprived, gives 1.0) and the participation index is the area's active volunteers per resident relative to
    the best-served shown area (1.0 there). Areas come from `timecredits import-areas`.

    An area whose count of active volunteers the area breakdown hides (fewer than 5, or hidden so that such an
    area's count cannot be worked out: stats/suppression.py) is `hidden`: it has no rank, and comes after the
    ranked areas in order of need decile and code, which say nothing about its count (docs/design.md §5.3).
    """
    a = schema.areas
    with engine.connect() as conn:
        areas = conn.execute(select(a.c.code, a.c.name, a.c.need_decile, a.c.population)).all()
    if not areas:
        return []
    by_area = participation(engine, "area", start, end)
    per_area = {row.group: row.figures.active_volunteers for row in by_area.rows}
    protection = protect([(row.group, row.figures) for row in by_area.rows], by_area.totals, "area")
    hidden = {area.code for area in areas if not protection.shows(area.code, "active_volunteers")}
    rates = {area.code: per_area.get(area.code, 0) * 1000 / area.population for area in areas}
    # Relative to the best-served area that is itself shown: scores are published, and one measured against a
    # hidden area would give that area's count away.
    shown = [rates[a.code] for a in areas if a.code not in hidden]
    best = max(shown, default=0.0) or 1.0
    spots = [
        ColdSpot(None, area.code, area.name, area.need_decile, area.population, per_area.get(area.code, 0),
                 rates[area.code], round((11 - area.need_decile) / 10 * max(0.0, 1 - rates[area.code] / best), 4),
                 hidden=area.code in hidden)
        for area in areas
    ]
    ranked = sorted((s for s in spots if not s.hidden), key=lambda spot: (-spot.cold_score, spot.need_decile, spot.area))
    for rank, spot in enumerate(ranked, 1):
        spot.rank = rank
    return ranked + sorted((s for s in spots if s.hidden), key=lambda spot: (spot.need_decile, spot.area))
