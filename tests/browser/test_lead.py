"""What a programme lead reads on the dashboard, at a desktop and on a phone: the periods offered, the headline
figures, the breakdowns, the cold-spot note, small numbers in words, and no accessibility violations
(docs/design.md §5.3).

Screenshots land in test-output/browser/ (git-ignored) to be looked at.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.browser.conftest import DESKTOP, PHONE, QUIET_MONTH, DashboardStack
from tests.browser.test_dashboard import (
    DEMO_YEAR, headline, participation, screenshot, show_period, shown, sign_in, wait_ready,
)


def open_dashboard(page: Any, stack: DashboardStack, period: tuple[str, str] = DEMO_YEAR) -> None:
    sign_in(page, stack, stack.lead_token)
    page.locator('[data-testid="dashboard"][data-state="ready"]').wait_for()
    show_period(page, period)


def test_last_12_months_are_the_twelve_whole_months_before_this_one(page: Any,
                                                                     dashboard_stack: DashboardStack) -> None:
    today = datetime.now(ZoneInfo("Europe/London")).date()
    this_month = date(today.year, today.month, 1)
    end = this_month - timedelta(days=1)
    start = date(this_month.year - 1, this_month.month, 1)
    sign_in(page, dashboard_stack, dashboard_stack.lead_token)
    wait_ready(page, (start.isoformat(), end.isoformat()))  # the first choice, shown on signing in
    choice = page.get_by_test_id("period-choice")
    assert choice.input_value() == "last-12-months"
    months = f"{start:%B %Y}–{end:%B %Y}"
    assert choice.locator("option:checked").inner_text() == f"Last 12 whole months ({months})"
    assert page.get_by_test_id("period-label").inner_text() == f"1 {start:%B %Y} to {end.day} {end:%B %Y}"
    # The API's default period is the same twelve months.
    answer = httpx.get(dashboard_stack.url + "/v1/stats/participation", timeout=30,
                       headers={"Authorization": f"Bearer {dashboard_stack.lead_token}"}).json()
    assert (answer["from"], answer["to"]) == (start.isoformat(), end.isoformat())


def test_hours_are_written_as_the_report_writes_them(page: Any, dashboard_stack: DashboardStack) -> None:
    open_dashboard(page, dashboard_stack)
    year = participation(dashboard_stack, "month", DEMO_YEAR)
    assert headline(page, "hours") == shown(year["totals"]["hours"])
    labels = page.locator('[data-testid="chart-months"] g.hours text.value-label').all_text_contents()
    assert labels == [shown(row["hours"]) for row in year["rows"]]
    assert any("." in label for label in labels), "the demo has months of fractional hours"


def test_the_headline_shows_credits_gifted_rather_than_hours_again(page: Any, dashboard_stack: DashboardStack) -> None:
    open_dashboard(page, dashboard_stack)
    totals = participation(dashboard_stack, "month", DEMO_YEAR)["totals"]
    assert float(totals["credits_gifted"]) > 0, "the demo's volunteers give credits to each other"
    assert headline(page, "credits_gifted") == shown(totals["credits_gifted"])
    titles = page.locator('[data-testid="headline"] dt').all_inner_texts()
    assert "Credits earned" not in titles and "Hours given" in titles
    assert "Credits earned" not in page.get_by_test_id("measure").locator("option").all_inner_texts()


def test_organisations_are_listed_for_the_measure_they_can_have(page: Any, dashboard_stack: DashboardStack) -> None:
    open_dashboard(page, dashboard_stack)
    rows = participation(dashboard_stack, "org", DEMO_YEAR)["rows"]
    community = {row["group"] for row in rows if "community" in row["kinds"]}
    partners = {row["group"] for row in rows if "partner" in row["kinds"]}
    assert community and partners and not community & partners
    chart = page.get_by_test_id("chart-orgs")

    def drawn() -> set[str]:
        return set(chart.locator("g[data-row]").evaluate_all("nodes => nodes.map((n) => n.dataset.row)"))

    for measure in ("active_volunteers", "hours", "new_volunteers"):
        page.get_by_test_id("measure").select_option(measure)
        assert drawn() == community, measure
        assert "0" not in chart.locator("text.value-label").all_text_contents(), measure
    assert "Community organisations" in page.get_by_test_id("org-note").inner_text()
    page.get_by_test_id("measure").select_option("credits_spent")
    assert drawn() == partners
    assert "Partners" in page.get_by_test_id("org-note").inner_text()
    page.locator('section[data-group-by="org"] summary').click()
    table = page.get_by_test_id("table-org").locator("tbody th[scope=row]").all_inner_texts()
    assert len(table) == len(partners) + 1 and table[-1] == "Total"


def test_the_cold_spot_note_is_in_plain_words_and_says_the_demo_areas_are_made_up(
        page: Any, dashboard_stack: DashboardStack) -> None:
    open_dashboard(page, dashboard_stack)
    note = page.get_by_test_id("cold-method").inner_text()
    assert note.startswith("How the cold score is worked out: areas are ranked") and "most deprived tenth" in note
    for developer in ("`", "timecredits", "import-areas", "cold_score", " x ", "(1 -"):
        assert developer not in note, developer
    # The browser tests load the demo's sample areas, whose source says they are synthetic.
    sources = page.get_by_test_id("cold-sources").inner_text()
    assert "synthetic sample for the demo, not official figures" in sources
    warning = page.get_by_test_id("cold-synthetic")
    assert warning.is_visible() and "made up for the demonstration" in warning.inner_text()


def test_small_numbers_are_written_in_the_same_words_everywhere(page: Any, dashboard_stack: DashboardStack,
                                                                  screenshot_dir: Path) -> None:
    open_dashboard(page, dashboard_stack, QUIET_MONTH)
    for summary in page.locator("details.figures summary").all():
        summary.click()
    screenshot(page, screenshot_dir, "lead-quiet-month-words")
    marks = page.locator('[data-testid="dashboard"] [data-testid="suppressed"]').all_text_contents()
    # A group of fewer than 5 says so; a figure hidden in a shown group (small, or hidden with a small one) is
    # "withheld", which is true of both (docs/design.md §5.3).
    assert "fewer than 5" in marks and set(marks) <= {"fewer than 5", "withheld"}, set(marks)
    for chart in ("chart-categories", "chart-months"):
        assert "[c]" not in page.get_by_test_id(chart).text_content(), chart
    cells = page.locator("td.suppressed-cell").all_text_contents()
    assert cells and set(cells) <= {"fewer than 5", "withheld"}, set(cells)
    # Only the footer names [c], as the CSV files' mark.
    text = page.evaluate("""() => { const main = document.querySelector('[data-testid="dashboard"]').cloneNode(true);
        main.querySelector('footer').remove(); return main.textContent; }""")
    assert "[c]" not in text


OVERFLOW = """() => {
  // Elements reaching past the window's right edge, other than inside a table's own scrolling container.
  const width = document.documentElement.clientWidth;
  return Array.from(document.querySelectorAll('[data-testid="dashboard"] *'))
    .filter((node) => !node.closest('.table-wrap') && node.getClientRects().length
      && node.getBoundingClientRect().right > width + 0.5)
    .map((node) => `${node.localName}.${node.getAttribute('class') || ''}[${node.dataset.testid || ''}]`
      + ` right=${Math.round(node.getBoundingClientRect().right)}`);
}"""


@pytest.mark.parametrize("page", [PHONE], indirect=True)
def test_on_a_phone_labels_and_tables_fit(page: Any, dashboard_stack: DashboardStack, screenshot_dir: Path) -> None:
    open_dashboard(page, dashboard_stack)
    for summary in page.locator("details.figures summary").all():
        summary.click()
    screenshot(page, screenshot_dir, "lead-phone-demo-year")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    assert page.evaluate(OVERFLOW) == []
    # No label is cut short: neither a chart's row labels nor the headline figures' titles.
    labels = page.locator('[data-testid^="chart-"] text.row-label').all_text_contents()
    assert labels and not [label for label in labels if label.endswith("…")]
    clipped = page.locator('[data-testid="headline"] dt, label, .card-head h2, .card-head h3').evaluate_all(
        "nodes => nodes.filter((n) => n.scrollWidth > n.clientWidth + 1).map((n) => n.textContent)")
    assert clipped == []
    # The cold-spot table scrolls inside its own container, says so, and its score column can be reached.
    wrap = page.get_by_test_id("cold-spots").locator(".table-wrap")
    scrolls = wrap.evaluate("node => node.scrollWidth > node.clientWidth")
    assert scrolls, "seven columns do not fit 390 pixels: the table scrolls within its container"
    cue = page.get_by_test_id("cold-spots").get_by_test_id("scroll-cue")
    assert cue.is_visible() and "scroll" in cue.inner_text().lower()
    assert wrap.get_attribute("tabindex") == "0" and wrap.get_attribute("role") == "region"
    score = page.get_by_role("columnheader", name="Cold score")
    score.scroll_into_view_if_needed()
    box = score.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5
    screenshot(page, screenshot_dir, "lead-phone-cold-spots-scrolled")


def test_part_of_a_month_is_refused_in_plain_words(page: Any, dashboard_stack: DashboardStack,
                                                    screenshot_dir: Path) -> None:
    open_dashboard(page, dashboard_stack)
    page.get_by_test_id("period-from").fill("2026-01-05")
    page.get_by_test_id("period-to").fill("2026-01-31")
    page.get_by_test_id("period-apply").click()
    error = page.get_by_test_id("load-error")
    error.wait_for()
    assert "whole months" in error.inner_text() and "1st of a month" in error.inner_text(), error.inner_text()
    screenshot(page, screenshot_dir, "lead-part-of-a-month")
    violations = axe_violations(page)
    assert not violations, violations
    choices = page.locator('[data-testid="period-choice"] option').evaluate_all("(nodes) => nodes.map((n) => n.value)")
    assert "this-quarter" not in choices, "a quarter so far is not whole months"


def axe_violations(page: Any) -> str:
    """axe-core's violations on the page as it stands, as a readable report ("" when there are none)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    assert results.response["passes"], "axe-core checked nothing"
    return results.generate_report() if results.violations_count else ""


@pytest.mark.parametrize("page", [DESKTOP, PHONE], indirect=True, ids=["desktop", "phone"])
def test_the_dashboard_has_no_accessibility_violations(page: Any, dashboard_stack: DashboardStack,
                                                       screenshot_dir: Path) -> None:
    size = f"{page.viewport_size['width']}x{page.viewport_size['height']}"
    page.goto(dashboard_stack.url + "/")
    page.get_by_test_id("signin").wait_for()
    screenshot(page, screenshot_dir, f"axe-signin-{size}")
    violations = axe_violations(page)
    assert not violations, violations
    open_dashboard(page, dashboard_stack)
    for period in (DEMO_YEAR, QUIET_MONTH):  # the whole programme, and a month of mostly suppressed figures
        show_period(page, period)
        page.evaluate("document.querySelectorAll('details.figures').forEach((d) => { d.open = true; })")
        screenshot(page, screenshot_dir, f"axe-dashboard-{period[0]}-{period[1]}-{size}")
        violations = axe_violations(page)
        assert not violations, f"{period}: {violations}"
