"""Hours are written one way in the report and on the dashboard (docs/design.md §5.3)."""
from __future__ import annotations

import pytest

from stats.numbers import hours_text


@pytest.mark.parametrize(("minutes", "text"), [
    (0, "0"),
    (60, "1"),
    (90, "1.5"),
    (15, "0.25"),
    (20, "0.33"),
    (186_600, "3,110"),
    (578_430, "9,640.5"),
    (60_000_000, "1,000,000"),
    (-90, "-1.5"),
])
def test_hours_are_whole_without_decimals_and_fractions_without_trailing_zeros(minutes: int, text: str) -> None:
    assert hours_text(minutes) == text
