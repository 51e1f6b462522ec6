"""The statistics' default period and the demo areas' mark (docs/design.md §5.3)."""
from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from api.routes.statistics import resolve_period
from stats.queries import synthetic_source
from timecredits.cli import DEMO_AREAS


def test_the_default_period_is_the_last_twelve_whole_months() -> None:
    before = datetime.now(ZoneInfo("Europe/London")).date()
    start, end = resolve_period(None, None, None)
    this_month = date(before.year, before.month, 1)
    assert (start, end) == (date(this_month.year - 1, this_month.month, 1), this_month - timedelta(days=1))


def test_a_given_end_still_gets_the_twelve_months_to_it() -> None:
    assert resolve_period(None, date(2026, 9, 15), None) == (date(2025, 10, 1), date(2026, 9, 15))


def test_the_demo_areas_say_they_are_synthetic_and_official_figures_do_not() -> None:
    with open(DEMO_AREAS, encoding="utf-8", newline="") as file:
        sources = {row["source"] for row in csv.DictReader(file)}
    assert sources and all(synthetic_source(source) for source in sources)
    assert not synthetic_source("IMD 2019; ONS mid-2022 estimates")
