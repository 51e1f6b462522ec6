"""The programme lead's dashboard in headless Chromium, against a real API process and the demo programme.

Screenshots of every step land in test-output/browser/ (git-ignored) to be looked at.
"""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from api.auth import Role, create_token
from ledger.pg import schema
from tests.browser.conftest import QUIET_MONTH, DashboardStack

DEMO_YEAR = ("2025-11-01", "2026-10-31")  # the whole demo programme, month by month
FIRST_QUARTER = ("2026-01-01", "2026-03-31")
CHARTS = {"org": "chart-orgs", "area": "chart-areas", "age_band": "chart-age", "seb": "chart-seb"}


def stats(stack: DashboardStack, path: str, **params: str) -> dict[str, Any]:
    response = httpx.get(stack.url + path, params=params, headers={"Authorization": f"Bearer {stack.lead_token}"},
                         timeout=30)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def participation(stack: DashboardStack, group_by: str, period: tuple[str, str]) -> dict[str, Any]:
    return stats(stack, "/v1/stats/participation", group_by=group_by, **{"from": period[0], "to": period[1]})


def sign_in(page: Any, stack: DashboardStack, token: str) -> None:
    page.goto(stack.url + "/")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def wait_ready(page: Any, period: tuple[str, str]) -> None:
    page.locator(f'[data-testid="dashboard"][data-state="ready"][data-period="{period[0]}/{period[1]}"]').wait_for()


def show_period(page: Any, period: tuple[str, str]) -> None:
    page.get_by_test_id("period-from").fill(period[0])
    page.get_by_test_id("period-to").fill(period[1])
    page.get_by_test_id("period-apply").click()
    wait_ready(page, period)


def bars(page: Any, chart: str) -> Any:
    return page.locator(f'[data-testid="{chart}"] rect[data-testid="bar"]')


def headline(page: Any, name: str) -> str:
    return page.locator(f'[data-testid="figure-{name}"] [data-testid="figure-value"]').inner_text()


def shown(figure: str | int) -> str:
    """A figure as the page writes it: thousands separated, no trailing zero decimals."""
    value = float(figure)
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}".rstrip("0")


def screenshot(page: Any, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def test_the_lead_sees_the_demo_programme(page: Any, dashboard_stack: DashboardStack, screenshot_dir: Path) -> None:
    stack = dashboard_stack
    sign_in(page, stack, stack.lead_token)
    page.locator('[data-testid="dashboard"][data-state="ready"]').wait_for()
    show_period(page, DEMO_YEAR)
    screenshot(page, screenshot_dir, "dashboard-demo-year")

    year = participation(stack, "month", DEMO_YEAR)
    assert page.get_by_test_id("period-label").inner_text() == "1 November 2025 to 31 October 2026"
    for name in ("active_volunteers", "new_volunteers", "retained_volunteers", "hours", "credits_spent",
                 "credits_gifted"):
        assert headline(page, name) == shown(year["totals"][name]), name

    for chart in ("Active volunteers and hours given by month", "Active volunteers by area",
                  "Active volunteers by organisation", "Active volunteers by age band",
                  "Active volunteers by socio-economic background",
                  "Bookings, attendances and redemptions by partner category"):
        assert page.get_by_role("img", name=chart).is_visible(), chart
    assert page.get_by_role("table", name="Cold spots for 1 November 2025 to 31 October 2026, coldest first; areas "
                            "whose figures are withheld follow, by need decile, not ranked.").is_visible()

    months = bars(page, "chart-months")
    assert months.count() == 12
    assert [months.nth(i).get_attribute("data-group") for i in range(12)] == [row["group"] for row in year["rows"]]
    assert [int(months.nth(i).get_attribute("data-value")) for i in range(12)] == \
        [row["active_volunteers"] for row in year["rows"]]
    assert all(float(months.nth(i).get_attribute("height")) > 0 for i in range(12))
    assert page.locator('[data-testid="chart-months"] circle[data-testid="point"]').count() == 12

    for group_by, chart in CHARTS.items():
        rows = participation(stack, group_by, DEMO_YEAR)["rows"]
        if group_by == "org":  # people and hours are drawn for the organisations where hours are given
            rows = [row for row in rows if "community" in row["kinds"]]
        drawn = bars(page, chart)
        assert drawn.count() == len(rows) > 0, chart
        assert sorted(drawn.nth(i).get_attribute("data-group") for i in range(drawn.count())) == \
            sorted(row["group"] for row in rows)
    area_names = page.locator('[data-testid="chart-areas"] text.row-label').all_text_contents()
    assert {"Tower Hamlets", "Hackney", "Newham", "Lambeth", "Southwark", "Haringey", "Islington"} <= set(area_names)
    categories = participation(stack, "category", DEMO_YEAR)["rows"]
    assert bars(page, "chart-categories").count() == 3 * len(categories)
    sport = page.locator('[data-testid="chart-categories"] rect[data-group="sport"][data-series="attendances"]')
    assert sport.get_attribute("data-value") == str(next(r for r in categories if r["group"] == "sport")["attendances"])

    with stack.engine.connect() as conn:
        areas = conn.execute(select(func.count()).select_from(schema.areas)).scalar_one()
    cold = page.locator('[data-testid="table-cold-spots"] tbody tr')
    assert cold.count() == areas == len(stats(stack, "/v1/stats/cold-spots", **dict(zip(("from", "to"), DEMO_YEAR)))["areas"])
    assert cold.first.locator("td").first.inner_text() == "1"

    # Another measure redraws the breakdowns from the figures already fetched.
    page.get_by_test_id("measure").select_option("hours")
    hackney = page.locator('[data-testid="chart-areas"] rect[data-group="E09000012"]')
    assert hackney.get_attribute("data-value") == next(
        r for r in participation(stack, "area", DEMO_YEAR)["rows"] if r["group"] == "E09000012")["hours"]
    page.get_by_test_id("measure").select_option("active_volunteers")

    # The CSV is fetched with the token and offered as a file.
    with page.expect_download() as download_info:
        page.get_by_test_id("csv-month").click()
    download = download_info.value
    assert download.suggested_filename == f"participation-month-{DEMO_YEAR[0]}-{DEMO_YEAR[1]}.csv"
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert rows[0][:3] == ["month", "label", "volunteers"] and len(rows) == 1 + 12 + 1

    # Another period reloads every chart and the headline figures.
    year_active = headline(page, "active_volunteers")
    show_period(page, FIRST_QUARTER)
    quarter = participation(stack, "month", FIRST_QUARTER)
    assert bars(page, "chart-months").count() == 3
    assert headline(page, "active_volunteers") == shown(quarter["totals"]["active_volunteers"]) != year_active
    assert headline(page, "retained_volunteers") == shown(quarter["totals"]["retained_volunteers"])
    assert page.get_by_test_id("period-label").inner_text() == "1 January 2026 to 31 March 2026"
    screenshot(page, screenshot_dir, "dashboard-2026-q1")

    # The token lasts as long as the tab: a reload keeps the lead signed in, on the same period.
    page.reload()
    wait_ready(page, FIRST_QUARTER)
    assert page.get_by_test_id("signin").is_hidden()

    # A quick choice sets the dates and reloads at once.
    today = datetime.now(ZoneInfo("Europe/London")).date()
    first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    previous_end = first - timedelta(days=1)
    previous_start = date(previous_end.year, previous_end.month - 2, 1)
    page.get_by_test_id("period-choice").select_option("previous-quarter")
    wait_ready(page, (previous_start.isoformat(), previous_end.isoformat()))
    assert page.get_by_test_id("period-from").input_value() == previous_start.isoformat()


def test_small_numbers_are_suppressed(page: Any, dashboard_stack: DashboardStack, screenshot_dir: Path) -> None:
    stack = dashboard_stack
    sign_in(page, stack, stack.lead_token)
    page.locator('[data-testid="dashboard"][data-state="ready"]').wait_for()
    show_period(page, QUIET_MONTH)
    screenshot(page, screenshot_dir, "dashboard-quiet-month-suppressed")

    orgs = [row for row in participation(stack, "org", QUIET_MONTH)["rows"] if "community" in row["kinds"]]
    hidden = [row["group"] for row in orgs if row["suppressed"]]
    assert hidden, "the period was chosen to have organisations with fewer than 5 volunteers"
    chart = page.get_by_test_id("chart-orgs")
    for group in hidden:
        assert chart.locator(f'rect[data-group="{group}"]').count() == 0, group
        assert chart.locator(f'text[data-testid="suppressed"][data-group="{group}"]').text_content() == "fewer than 5"
    assert bars(page, "chart-orgs").count() == len(orgs) - len(hidden)

    cold = stats(stack, "/v1/stats/cold-spots", **{"from": QUIET_MONTH[0], "to": QUIET_MONTH[1]})["areas"]
    suppressed_areas = [area["area"] for area in cold if area["suppressed"]]
    assert suppressed_areas
    for code in suppressed_areas:
        cells = page.locator(f'[data-testid="table-cold-spots"] tr[data-area="{code}"] td').all_inner_texts()
        # Not "fewer than 5": an area hidden with a small one has more (docs/design.md §5.3); and no rank.
        assert cells[3:5] == ["withheld", "withheld"] and cells[0] == "–", cells
        assert "0" not in cells[3:5]

    # The figures table beside the chart marks the same cells in the same words, never with a number.
    page.locator('section[data-group-by="org"] summary').click()
    table_row = page.locator('[data-testid="table-org"] tbody tr', has=page.get_by_role("rowheader", name="Bike Buddies"))
    if "bike-buddies" in hidden:
        assert set(table_row.locator("td").all_inner_texts()) == {"fewer than 5"}


def test_a_wrong_token_is_refused(page: Any, dashboard_stack: DashboardStack, screenshot_dir: Path) -> None:
    stack = dashboard_stack
    sign_in(page, stack, "tc_not-a-real-token")
    error = page.get_by_test_id("signin-error")
    error.wait_for()
    assert "not accepted" in error.inner_text()
    assert page.get_by_test_id("dashboard").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    screenshot(page, screenshot_dir, "signin-wrong-token")

    org_token, _ = create_token(stack.engine, Role.ORG, org_id="bike-buddies", label="browser test org")
    page.get_by_label("Access token").fill(org_token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("signin-error").filter(has_text="lead or admin").wait_for()

    page.get_by_label("Access token").fill(stack.lead_token)
    page.get_by_role("button", name="Sign in").click()
    page.locator('[data-testid="dashboard"][data-state="ready"]').wait_for()
    assert page.get_by_test_id("signin-error").is_hidden()
    page.get_by_test_id("sign-out").click()
    page.get_by_test_id("signin-info").filter(has_text="signed out").wait_for()
    assert page.evaluate("sessionStorage.length") == 0
    assert page.get_by_test_id("dashboard").is_hidden()


def test_the_page_is_served_self_contained(dashboard_stack: DashboardStack) -> None:
    url = dashboard_stack.url
    page = httpx.get(url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text
    for asset, media_type in {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}.items():
        response = httpx.get(f"{url}/dashboard/{asset}", timeout=10)
        assert response.status_code == 200 and response.headers["content-type"].startswith(media_type), asset
        assert "https://" not in response.text and "@import" not in response.text, asset
    assert httpx.get(url + "/dashboard/index.html", timeout=10).status_code == 404
    assert httpx.get(url + "/dashboard/..%2Fapp.py", timeout=10).status_code == 404
    paths = httpx.get(url + "/openapi.json", timeout=10).json()["paths"]
    assert "/" not in paths and not any(path.startswith("/dashboard") for path in paths)
