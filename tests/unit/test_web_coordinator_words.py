"""Hours as a coordinator types them, and as the pages say them (docs/design.md §8.3)."""
from __future__ import annotations

from datetime import date

import pytest

from web.coordinator import date_words, hours_words, read_hours


@pytest.mark.parametrize(("typed", "minutes"), [
    ("1.5", 90), ("1:30", 90), (" 2 ", 120), ("0.25", 15), (".5", 30), ("1,5", 90), ("0:01", 1), ("24", 1440),
    ("23:59", 1439),
])
def test_hours_typed_as_decimals_or_as_a_clock_are_read_as_minutes(typed: str, minutes: int) -> None:
    assert read_hours(typed) == minutes


@pytest.mark.parametrize("typed", ["", "0", "0:00", "24.5", "25", "1:60", "1h", "-1", "1.555", "abc", "1:5"])
def test_anything_else_is_not_hours(typed: str) -> None:
    assert read_hours(typed) is None


def test_hours_and_dates_are_said_in_words() -> None:
    assert [hours_words(m) for m in (1, 45, 60, 90, 120, 1440)] == [
        "1 minute", "45 minutes", "1 hour", "1 hour 30 minutes", "2 hours", "24 hours"]
    assert date_words(date(2026, 11, 30)) == "Monday 30 November 2026"
