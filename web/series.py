"""A series' sessions shown together (docs/design.md §5.13): the partner's listings and the volunteer's
opportunities both group the sessions of one series under its title, where the first of them falls in the list."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Grouped(Generic[T]):
    """One line of a list: a one-off (`sessions` empty), or a series whose sessions are `sessions`, in order."""

    first: T
    sessions: list[T] = field(default_factory=list)


def grouped(items: Iterable[T], series_of: Callable[[T], str | None]) -> list[Grouped[T]]:
    """`items` in their order, each series' sessions gathered at the place of its first."""
    lines: list[Grouped[T]] = []
    series: dict[str, Grouped[T]] = {}
    for item in items:
        series_id = series_of(item)
        if series_id is None:
            lines.append(Grouped(item))
        elif series_id in series:
            series[series_id].sessions.append(item)
        else:
            series[series_id] = Grouped(item, [item])
            lines.append(series[series_id])
    return lines
