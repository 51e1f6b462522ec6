"""Which figures of a breakdown may be shown: primary and complementary suppression (docs/design.md §5.3).

One rule for the API, its CSV, the dashboard (which reads the API) and the committee report:

- **primary**: a figure is hidden when its cell describes fewer than 5 volunteers, or when the figure itself
  describes 1 to 4 of them (`Figures.hidden`);
- **complementary**: a breakdown publishes, for each additive figure, a linear relation (the rows add up to the
  total). When exactly one value of such a relation is hidden, it is the total minus the shown rows, so the next
  smallest shown row's figure is hidden too, until no relation has exactly one hidden value that describes
  somebody (a suppressed cell's zero, nobody behind it, tells nothing about anyone). Figures that are one
  another again (hours and credits earned, at one credit an hour) are hidden together.

Totals are never hidden to protect a row: they are shared by every breakdown of the period, so hiding one in one
breakdown would protect nothing.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from stats.model import FIGURES, Figures

TOTAL = "\x00total"  # the totals row's key in `Protection.hidden`: no group is called this

#: Figures counting facts (hours, credits, bookings...): every fact is in one group, so rows add up to the total.
FACT_FIGURES = ("hours", "credits_earned", "credits_spent", "credits_gifted", "bookings", "attendances",
                "cancellations", "redemptions")
#: Figures counting volunteers: they add up only where a volunteer is in one group (their area, age band or
#: background); by month or quarter, a volunteer is new in one month only.
PEOPLE_FIGURES = ("volunteers", "active_volunteers", "new_volunteers", "retained_volunteers", "first_time_volunteers")
PERSON_GROUPINGS = ("area", "age_band", "seb")
#: Figures that tell one another (one credit an hour): hidden together.
TOGETHER: tuple[frozenset[str], ...] = (frozenset({"hours", "credits_earned"}),)


#: Fact figures a grouping's rows can have at all: only hours have a kind of activity, only spending a partner
#: category, and a gift no organisation. The others are zero in every row whatever the facts, and a row's zero
#: there tells nothing, shown or hidden.
_GROUPED_FACTS = {
    "activity": ("hours", "credits_earned"),
    "category": ("credits_spent", "bookings", "attendances", "cancellations", "redemptions"),
    "org": tuple(name for name in FACT_FIGURES if name != "credits_gifted"),
}


def additive_figures(group_by: str) -> tuple[str, ...]:
    """The figures whose rows add up to the breakdown's total (docs/design.md §5.3)."""
    facts = _GROUPED_FACTS.get(group_by, FACT_FIGURES)
    if group_by in PERSON_GROUPINGS:
        return facts + PEOPLE_FIGURES
    if group_by in ("month", "quarter"):
        return (*facts, "new_volunteers")
    return facts


def value(figures: Figures, name: str) -> int:
    """A figure by its published name (hours are kept in minutes)."""
    return figures.minutes if name == "hours" else int(getattr(figures, name))


@dataclass
class Protection:
    """Which figures of each row (by group) and of the totals (`TOTAL`) must not be shown."""

    hidden: dict[str, set[str]] = field(default_factory=dict)

    def shows(self, group: str, name: str) -> bool:
        return name not in self.hidden.get(group, set())

    def row(self, group: str) -> set[str]:
        return self.hidden.get(group, set())

    @property
    def totals(self) -> set[str]:
        return self.hidden.get(TOTAL, set())


def protect(rows: Sequence[tuple[str, Figures]], totals: Figures, group_by: str, *,
            figures: Iterable[str] = FIGURES, complementary: bool = True) -> Protection:
    """The figures to hide in a breakdown's `rows` (group, figures) and `totals`, among `figures`."""
    names = tuple(figures)
    hidden = {group: _primary(cell, names) for group, cell in rows}
    hidden[TOTAL] = _primary(totals, names)
    for group in hidden:
        _hide_together(hidden[group], names)
    if not complementary:
        return Protection(hidden)
    cells = dict(rows)

    def behind(group: str, name: str) -> int:
        return (totals if group == TOTAL else cells[group]).contributors.get(name, 0)

    relations = [name for name in additive_figures(group_by) if name in names]
    changed = True
    while changed:
        changed = False
        for name in relations:
            unknown = [group for group in hidden if name in hidden[group]]
            if len(unknown) != 1 or behind(unknown[0], name) == 0:
                continue  # none hidden, two or more, or one that describes nobody (a suppressed cell's zero)
            candidates = [group for group, _ in rows if name not in hidden[group]]
            if not candidates:
                # One row, hidden, and a total shown: the row is the total less what no row holds, a figure
                # nobody is behind (a total of zero), or the total itself, hidden too (docs/design.md §5.3).
                continue
            # The next smallest: fewest volunteers behind the figure, then smallest; a row with some first.
            chosen = min(candidates, key=lambda group: (
                behind(group, name) == 0, behind(group, name), abs(value(cells[group], name)), group))
            hidden[chosen].add(name)
            _hide_together(hidden[chosen], names)
            changed = True
    return Protection(hidden)


def _primary(cell: Figures, names: tuple[str, ...]) -> set[str]:
    """A cell nobody is in (a month without activity) describes no one: its zeros are shown."""
    return {name for name in names if cell.volunteers > 0 and cell.hidden(name)}


def _hide_together(hidden: set[str], names: tuple[str, ...]) -> None:
    for family in TOGETHER:
        if hidden & family:
            hidden |= family & set(names)
