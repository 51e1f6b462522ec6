"""The statistics' default period and the demo areas' mark (docs/design.md §5.3)."""
from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.errors import ApiError
from api.routes.statistics import resolve_period
from stats.queries import NotWholePeriods, require_whole_months, synthetic_source
from timecredits.cli import DEMO_AREAS


def test_the_default_period_is_the_last_twelve_whole_months() -> None:
    before = datetime.now(ZoneInfo("Europe/London")).date()
    start, end = resolve_period(None, None, None)
    this_month = date(before.year, before.month, 1)
    assert (start, end) == (date(this_month.year - 1, this_month.month, 1), this_month - timedelta(days=1))


def test_a_given_end_still_gets_the_twelve_months_to_it() -> None:
    assert resolve_period(None, date(2026, 9, 30), None) == (date(2025, 10, 1), date(2026, 9, 30))
    assert resolve_period(None, date(2026, 9, 15), None, whole_months_only=False) == (date(2025, 10, 1),
                                                                                      date(2026, 9, 15))


def test_a_given_start_alone_runs_to_the_end_of_the_last_whole_month() -> None:
    today = datetime.now(ZoneInfo("Europe/London")).date()
    start, end = resolve_period(date(2026, 1, 1) if today > date(2026, 2, 1) else date(2020, 1, 1), None, None)
    assert end == date(today.year, today.month, 1) - timedelta(days=1)


def test_figures_for_part_of_a_month_are_refused_in_plain_words() -> None:
    for start, end in ((date(2026, 1, 5), date(2026, 1, 31)), (date(2026, 1, 1), date(2026, 1, 30)),
                       (date(2026, 1, 5), date(2026, 1, 5)), (date(2026, 1, 1), date(2026, 2, 1))):
        with pytest.raises(ApiError) as refused:
            resolve_period(start, end, None)
        assert (refused.value.status, refused.value.code) == (422, "whole_periods_only")
        assert "whole months" in refused.value.message
    assert resolve_period(date(2026, 2, 1), date(2026, 2, 28), None) == (date(2026, 2, 1), date(2026, 2, 28))
    assert resolve_period(date(2024, 2, 1), date(2024, 2, 29), None) == (date(2024, 2, 1), date(2024, 2, 29))
    with pytest.raises(NotWholePeriods):  # the rule the report and the pages share, before any figure is read
        require_whole_months(date(2026, 7, 1), date(2026, 7, 15))
    require_whole_months(date(2026, 7, 1), date(2026, 9, 30))


def test_the_demo_areas_say_they_are_synthetic_and_official_figures_do_not() -> None:
    with open(DEMO_AREAS, encoding="utf-8", newline="") as file:
        sources = {row["source"] for row in csv.DictReader(file)}
    assert sources and all(synthetic_source(source) for source in sources)
    assert not synthetic_source("IMD 2019; ONS mid-2022 estimates")
