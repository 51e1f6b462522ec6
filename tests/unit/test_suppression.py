"""The one rule of suppression the API, the dashboard and the report share (docs/design.md §5.3)."""
from __future__ import annotations

from stats.model import Figures
from stats.suppression import TOTAL, additive_figures, protect


def _cell(people: int, minutes: int, *, bookers: int = 0) -> Figures:
    return Figures(volunteers=people + bookers, active_volunteers=people, minutes=minutes,
                   credits_earned=round(minutes * 100 / 60), bookings=bookers,
                   contributors={"volunteers": people + bookers, "active_volunteers": people, "hours": people,
                                 "credits_earned": people, "bookings": bookers})


def _total(*cells: Figures) -> Figures:
    total = Figures()
    for cell in cells:
        for name in ("volunteers", "active_volunteers", "minutes", "credits_earned", "bookings"):
            setattr(total, name, getattr(total, name) + getattr(cell, name))
        for name, count in cell.contributors.items():
            total.contributors[name] = total.contributors.get(name, 0) + count
    return total


def test_one_small_area_hides_the_next_smallest_with_it_and_never_the_total() -> None:
    rows = [("big", _cell(40, 9000)), ("small", _cell(3, 200)), ("middle", _cell(12, 2000)), ("next", _cell(9, 5000))]
    shown = protect(rows, _total(*(cell for _, cell in rows)), "area")
    assert shown.row("small") >= {"volunteers", "active_volunteers", "hours", "credits_earned"}
    assert shown.row("next") >= {"volunteers", "active_volunteers", "hours", "credits_earned"}, "fewest behind it"
    assert not shown.row("big") and not shown.row("middle")
    assert shown.totals == set(), "the totals are the same in every breakdown: hiding one protects nothing"


def test_two_small_cells_protect_each_other_and_nothing_more_is_hidden() -> None:
    rows = [("a", _cell(40, 9000)), ("b", _cell(3, 200)), ("c", _cell(2, 100)), ("d", _cell(9, 5000))]
    shown = protect(rows, _total(*(cell for _, cell in rows)), "area")
    assert {group for group, _ in rows if shown.row(group)} == {"b", "c"}


def test_by_organisation_counts_of_people_are_not_additive_and_hours_are() -> None:
    assert "active_volunteers" not in additive_figures("org") and "hours" in additive_figures("org")
    assert "credits_gifted" not in additive_figures("org"), "a gift has no organisation"
    assert additive_figures("activity") == ("hours", "credits_earned")
    assert "new_volunteers" in additive_figures("month") and "volunteers" not in additive_figures("month")
    # a shown organisation whose hours describe 3 volunteers: its hours hide another's, its count hides nothing
    few_hours = Figures(volunteers=8, active_volunteers=3, minutes=100, credits_earned=167, bookings=6,
                        contributors={"volunteers": 8, "active_volunteers": 3, "hours": 3, "credits_earned": 3,
                                      "bookings": 5})
    rows = [("club", few_hours), ("garden", _cell(20, 3000)), ("library", _cell(6, 900))]
    shown = protect(rows, _total(*(cell for _, cell in rows)), "org")
    assert shown.row("club") == {"active_volunteers", "hours", "credits_earned"}
    assert shown.row("library") == {"hours", "credits_earned"}, "hours and credits earned are hidden together"
    assert not shown.row("garden")


def test_switched_off_only_the_small_cells_are_hidden() -> None:
    rows = [("big", _cell(40, 9000)), ("small", _cell(3, 200))]
    shown = protect(rows, _total(*(cell for _, cell in rows)), "area", complementary=False)
    assert not shown.row("big") and shown.row("small") and TOTAL in shown.hidden
