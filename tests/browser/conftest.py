"""Browser-test fixtures: the demo programme in a fresh database, a real `timecredits api` process, and
headless Debian Chromium driven by Playwright.

The demo is loaded the fast way, straight through the worker's transaction (`EventProcessor`) and the
statistics' fact writer, with no worker or broker in between: the browser tests are about the page, the
pipeline has tests of its own.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, insert, select

from api.auth import Role, create_token
from ledger.events import HoursLogged, decode_event, encode_event
from ledger.intake import own_actor
from ledger.pg import schema
from ledger.pg.processing import EventProcessor
from producers.kafka import ALL_TOPICS, ensure_topics, prefixed
from stats.facts import write_facts
from tests.browser.chromium import LAUNCH_ARGS, ChromiumUnavailable, ensure_chromium
from tests.conftest import service_missing
from tests.postgres import fresh_database
from timecredits import demo
from timecredits.demo_loader import keep_notes

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}  # a common phone's CSS pixels
ADMIN_TOKEN = "browser-test-admin-token-" + "0" * 16
BATCH = 1000
#: The demo's boroughs as the areas table holds them: need decile (1 = most deprived tenth of English local
#: authorities, IMD 2019, rounded) and usual residents (Census 2021, rounded). Used when no area import exists.
AREAS = {
    "E09000030": (2, 310_300),
    "E09000012": (1, 259_200),
    "E09000025": (2, 351_100),
    "E09000022": (3, 317_600),
    "E09000028": (3, 307_700),
    "E09000014": (2, 264_200),
    "E09000019": (3, 216_600),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiProcess:
    """`timecredits api --port N` as a child process with its own log, stopped by its pid."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "timecredits.cli", "api", "--port", str(self.port)],
            env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline, last = time.monotonic() + timeout_s, "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the API exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = httpx.get(self.url + "/healthz", timeout=3)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise AssertionError(f"the API did not answer within {timeout_s:.0f} s (last: {last}):\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@dataclass
class DashboardStack:
    url: str
    engine: Engine
    lead_token: str
    events_loaded: int
    api: ApiProcess


def _decoded(event: demo.DemoEvent):  # type: ignore[no-untyped-def]
    _, raw = encode_event(event.payload, actor=own_actor(event.payload) or demo.ACTOR, event_id=event.event_id,
                          occurred_at=event.occurred_at)
    return decode_event(raw)


#: The month before the demo's year, when a dozen of its volunteers give hours: figures are for whole months only
#: (docs/design.md §5.3), and this is the month whose organisations and areas are mostly fewer than 5.
QUIET_MONTH = ("2025-10-01", "2025-10-31")


def quiet_month() -> list[demo.DemoEvent]:
    """Seven volunteers' hours at Bike Buddies, three at Dalston Community Garden and two with the Lambeth Litter
    Pickers (the organisations that approve hours at once), in October 2025."""
    who = demo.volunteering()
    events = []
    for org, count in (("bike-buddies", 7), ("dalston-garden", 3), ("lambeth-litter-pickers", 2)):
        members = [volunteer for volunteer in who.ids if who.orgs[volunteer][0] == org][:count]
        for n, volunteer in enumerate(members):
            day = date(2025, 10, 10 + n)
            events.append(demo.DemoEvent(uuid.uuid5(demo.DEMO_NAMESPACE, f"quiet-month/{org}/{n}"),
                                         datetime(day.year, day.month, day.day, 18, tzinfo=UTC),
                                         HoursLogged(volunteer_id=volunteer, org_id=org, date=day, minutes=60 + 15 * n,
                                                     activity="Litter pick")))
    return events


def load_demo(engine: Engine) -> int:
    """The demo programme applied batch by batch, with the statistics' facts of each batch's entries, and the
    quiet month before it."""
    processor = EventProcessor(engine)
    registry = [_decoded(e) for e in demo.registry()]
    activity_events = [*quiet_month(), *demo.activity()]
    keep_notes(engine, activity_events)
    activity = [_decoded(e) for e in activity_events]
    rejected = 0
    for items in [registry, *(activity[n : n + BATCH] for n in range(0, len(activity), BATCH))]:
        result = processor.process(items)
        rejected += sum(1 for outcome in result.outcomes if not outcome.applied)
        write_facts(engine, result.committed)
    # A few bookings of the demo are refused (opportunity_mismatch) with their settlements; the rest must apply.
    assert rejected < len(activity) // 10, f"{rejected} of {len(activity)} demo events were rejected"
    return len(registry) + len(activity)


def _area_import_sample() -> Path | None:
    """The sample areas file, when the `timecredits import-areas` command and a sample exist."""
    from timecredits.cli import app

    names = {command.name or (command.callback.__name__ if command.callback else "") for command in
             app.registered_commands}
    if not names & {"import-areas", "import_areas"}:
        return None
    root = Path(__file__).resolve().parents[2]
    samples = sorted(path for folder in ("stats", "producers") for path in (root / folder / "samples").glob("*area*.csv"))
    return samples[0] if samples else None


def load_areas(engine: Engine, database_url: str, log_path: Path) -> None:
    """The sample areas through `timecredits import-areas` when it exists, else the demo's boroughs by SQL."""
    sample = _area_import_sample()
    if sample is not None:
        with open(log_path, "ab") as log:
            result = subprocess.run([sys.executable, "-m", "timecredits.cli", "import-areas", str(sample)],
                                    env={**os.environ, "DATABASE_URL": database_url}, stdout=log,
                                    stderr=subprocess.STDOUT, timeout=120, check=False)
        assert result.returncode == 0, f"timecredits import-areas {sample} failed:\n{log_path.read_text()[-2000:]}"
    else:
        with engine.begin() as conn:
            conn.execute(insert(schema.areas), [
                {"code": code, "name": demo.BOROUGHS[code], "need_decile": decile, "population": population,
                 "source": "browser test fixture (IMD 2019, Census 2021, rounded)"}
                for code, (decile, population) in AREAS.items()
            ])
    with engine.connect() as conn:
        assert conn.execute(select(schema.areas.c.code)).first() is not None, "no areas were loaded"


@pytest.fixture(scope="module")
def dashboard_stack(embedded_postgres: str, primary_template: str, kafka_bootstrap: str,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardStack]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with fresh_database(embedded_postgres, primary_template) as database_url:
        prefix = f"t{uuid.uuid4().hex[:10]}."
        ensure_topics(kafka_bootstrap, 4, prefixed(ALL_TOPICS, prefix))
        engine = create_engine(database_url)
        try:
            events = load_demo(engine)
            load_areas(engine, database_url, tmp / "import-areas.log")
            lead_token, _ = create_token(engine, Role.LEAD, label="browser test lead")
            api = ApiProcess({
                "DATABASE_URL": database_url,
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "TIMECREDITS_TOPIC_PREFIX": prefix,
                "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN,
                "TIMECREDITS_DATA_DIR": str(tmp / "data"),
            }, tmp / "api.log")
            try:
                api.wait_ready()
                page = httpx.get(api.url + "/", timeout=10)
                assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), (
                    f"GET / answered {page.status_code}: is api.routes.dashboard's router included in api/app.py?")
                yield DashboardStack(api.url, engine, lead_token, events, api)
            finally:
                api.stop()
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Module-scoped: Playwright's sync API keeps an event loop running in the main thread while it is open,
    and tests after it that call asyncio.run() (the load test, the asyncpg reads) must find none."""
    try:
        executable = ensure_chromium()
    except ChromiumUnavailable as exc:
        service_missing(f"Chromium for the browser tests: {exc}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("Playwright for Python is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def screenshot_dir(request: pytest.FixtureRequest) -> Path:
    """Screenshots to look at after a run (git-ignored): test-output/browser/ under the project root."""
    path = request.config.rootpath / "test-output" / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture()
def page(browser: Any, dashboard_stack: DashboardStack, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser tab that may talk to the API only: any other request is refused and fails the test.
    A desktop window unless the test asks for another size (`@pytest.mark.parametrize("page", [PHONE],
    indirect=True)`)."""
    viewport = getattr(request, "param", DESKTOP)
    context = browser.new_context(viewport=viewport, accept_downloads=True, locale="en-GB",
                                  timezone_id="Europe/London", is_mobile=viewport["width"] < 600,
                                  has_touch=viewport["width"] < 600)
    outside: list[str] = []
    errors: list[str] = []

    def only_the_api(route: Any) -> None:
        url = route.request.url
        if url.startswith((dashboard_stack.url + "/", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", only_the_api)
    tab = context.new_page()
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(20_000)
    try:
        yield tab
    finally:
        context.close()
    assert not outside, f"the page tried to load from elsewhere: {outside}"
    assert not errors, f"script errors on the page: {errors}"
