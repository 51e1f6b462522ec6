"""The statistics' rules (docs/design.md §5.3) written plainly over facts held in memory: one loop a cell.

This was how the figures were computed before PostgreSQL aggregated them; the tests keep it as the reference
that stats/aggregate.py must agree with, figure by figure and contributor by contributor.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import Engine, exists, func, select

from ledger.pg import schema
from stats.model import Figures
from stats.queries import UNDISCLOSED, months_before, quarter_of


@dataclass
class _Fact:
    kind: str
    day: date
    volunteer: str
    org: str | None
    category: str | None
    activity: str | None
    amount: int
    minutes: int
    sign: int


@dataclass
class _Volunteer:
    area: str | None
    age_band: str | None
    seb: str | None
    consent: bool
    first_time: bool = False


@dataclass
class _Cell:
    start: date
    end: date
    facts: list[_Fact] = field(default_factory=list)


_COUNTERS = {"opportunity_booked": "bookings", "booking_attended": "attendances",
             "booking_cancelled": "cancellations", "credits_redeemed": "redemptions"}


class Reference:
    def __init__(self, engine: Engine, start: date, end: date) -> None:
        f, v = schema.stats_facts, schema.volunteers
        earliest = months_before(quarter_of(start)[0], 3)
        with engine.connect() as conn:
            self.facts = [
                _Fact(r.kind, r.occurred_on, r.volunteer_id, r.org_id, r.category,
                      (r.activity_category or "other") if r.kind == "hours_approved" else None,
                      r.amount, r.minutes, r.sign)
                for r in conn.execute(select(f).where(f.c.occurred_on.between(earliest, end)))
            ]
            r = schema.stats_facts.alias("r")
            self.first_hours = dict(conn.execute(
                select(f.c.volunteer_id, func.min(f.c.occurred_on))
                .where(f.c.kind == "hours_approved", f.c.sign == 1,
                       ~exists().where(r.c.original_entry_id == f.c.entry_id))
                .group_by(f.c.volunteer_id)
            ).all())
            self.volunteers = {
                row.id: _Volunteer(row.area, row.age_band, row.seb, row.consent_stats, bool(row.first_time_volunteer))
                for row in conn.execute(select(v.c.id, v.c.area, v.c.age_band, v.c.seb, v.c.consent_stats,
                                               v.c.first_time_volunteer))
            }
        self.start, self.end = start, end

    def active(self, facts: Iterable[_Fact]) -> set[str]:
        minutes: defaultdict[str, int] = defaultdict(int)
        for fact in facts:
            if fact.kind == "hours_approved":
                minutes[fact.volunteer] += fact.sign * fact.minutes
        return {volunteer for volunteer, total in minutes.items() if total > 0}

    def figures(self, cell: _Cell) -> Figures:
        figures = Figures()
        in_period = cell.facts
        everyone = {fact.volunteer for fact in in_period}
        active = self.active(in_period)
        previous_start = months_before(cell.start, 3)
        before = [f for f in self.facts if previous_start <= f.day < cell.start]
        new = {v for v in active if cell.start <= self.first_hours.get(v, date.max) <= cell.end}
        retained = active & self.active(before)
        first_time = {v for v in active if (found := self.volunteers.get(v)) is not None and found.first_time}
        by_figure: defaultdict[str, set[str]] = defaultdict(set)
        for fact in in_period:
            signed = fact.sign * fact.amount
            if fact.kind == "hours_approved":
                figures.minutes += fact.sign * fact.minutes
                figures.credits_earned += signed
                by_figure["hours"].add(fact.volunteer)
                by_figure["credits_earned"].add(fact.volunteer)
            elif fact.kind in ("booking_attended", "credits_redeemed"):
                figures.credits_spent += signed
                by_figure["credits_spent"].add(fact.volunteer)
            elif fact.kind == "credits_gifted":
                figures.credits_gifted += signed
                by_figure["credits_gifted"].add(fact.volunteer)
            counter = _COUNTERS.get(fact.kind)
            if counter:
                setattr(figures, counter, getattr(figures, counter) + fact.sign)
                by_figure[counter].add(fact.volunteer)
        figures.volunteers = len(everyone)
        figures.active_volunteers = len(active)
        figures.new_volunteers = len(new)
        figures.retained_volunteers = len(retained)
        figures.first_time_volunteers = len(first_time)
        figures.contributors = {
            "volunteers": len(everyone), "active_volunteers": len(active), "new_volunteers": len(new),
            "retained_volunteers": len(retained), "first_time_volunteers": len(first_time),
            **{name: len(volunteers) for name, volunteers in by_figure.items()},
        }
        return figures

    def group_of(self, fact: _Fact, group_by: str) -> str | None:
        volunteer = self.volunteers.get(fact.volunteer) or _Volunteer(None, None, None, False)
        match group_by:
            case "month":
                return f"{fact.day.year}-{fact.day.month:02d}"
            case "quarter":
                return f"{fact.day.year}-Q{(fact.day.month - 1) // 3 + 1}"
            case "org":
                return fact.org
            case "area":
                return volunteer.area or "unknown"
            case "age_band":
                return (volunteer.age_band or "not_given") if volunteer.consent else UNDISCLOSED
            case "seb":
                return (volunteer.seb or "not_given") if volunteer.consent else UNDISCLOSED
            case "category":
                return fact.category
            case "activity":
                return fact.activity
        raise ValueError(group_by)

    def breakdown(self, group_by: str) -> tuple[dict[str, Figures], Figures]:
        in_period = [fact for fact in self.facts if self.start <= fact.day <= self.end]
        cells: dict[str, _Cell] = {}
        for fact in in_period:
            group = self.group_of(fact, group_by)
            if group is None:
                continue
            if group not in cells:
                cells[group] = _Cell(*_cell_period(group, group_by, self.start, self.end))
            cells[group].facts.append(fact)
        rows = {group: self.figures(cell) for group, cell in cells.items()}
        return rows, self.figures(_Cell(self.start, self.end, in_period))


def _cell_period(group: str, group_by: str, start: date, end: date) -> tuple[date, date]:
    if group_by == "month":
        first = date(int(group[:4]), int(group[5:]), 1)
        return first, months_before(first, -1) - timedelta(days=1)
    if group_by == "quarter":
        return quarter_of(date(int(group[:4]), 3 * (int(group[6]) - 1) + 1, 1))
    return start, end
