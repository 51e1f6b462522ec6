"""A real Prometheus (Debian's `prometheus` package) with the scrape jobs of infra/prometheus/prometheus.yml, pointed
at a local stack: a `timecredits api` process and two `timecredits worker` processes with metrics ports
(docs/design.md §6).

Every target must be up, the ledger metrics must reach Prometheus with the values the workers export, and every
query of the Grafana dashboard must be valid PromQL to that Prometheus and, for the panels the traffic here feeds,
return data.

Prometheus is installed with apt-get when it is missing and the tests run as root (like Chromium for the browser
tests); where it cannot be, the test is skipped, and fails under CI=true.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infra.lifetime import die_with_parent
from tests.conftest import service_missing
from tests.e2e.api_stack import Api, ApiProcess
from tests.e2e.conftest import Stack, free_port
from tests.e2e.stack import WorkerProcess, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = ROOT / "infra" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "infra" / "grafana" / "dashboards" / "timecredits.json"
ADMIN_TOKEN = "tc_prometheus_admin_" + uuid.uuid4().hex
AREA = "E09000030"
#: Scrapes every 2 s here (15 s in production) so that rates have samples within a minute of traffic.
LOCAL_SCRAPE_INTERVAL = "2s"
#: Generous: two cores shared with other work, a broker group join, a first apt-get install.
WAIT_S = 180
#: Panels the traffic of this test feeds: their queries must return series, not only parse.
FED_BY_THIS_TEST = ("timecredits_events_applied_total", "timecredits_events_rejected_total",
                    "timecredits_http_requests_total", "timecredits_http_request_seconds_bucket",
                    "timecredits_batch_seconds_bucket", "timecredits_consumer_lag", "timecredits_database_retries_total",
                    'up{job=~')


# --- Debian's Prometheus -------------------------------------------------------------------------------------------

class PrometheusUnavailable(RuntimeError):
    """Prometheus is not installed and could not be installed here; the message says what to do."""


INSTALL = ["apt-get", "install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600", "prometheus"]


def _installed() -> Path | None:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
    return Path(found) if found else None


def install_prometheus(timeout_s: float = 900) -> None:
    """`apt-get update && apt-get install -y --no-install-recommends prometheus`, as root."""
    if shutil.which("apt-get") is None:
        raise PrometheusUnavailable("prometheus is missing and there is no apt-get here: install Prometheus by hand")
    if os.geteuid() != 0:
        raise PrometheusUnavailable(f"prometheus is missing and the tests do not run as root: run "
                                    f"`sudo sh -c 'apt-get update && {' '.join(INSTALL)}'`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], INSTALL):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PrometheusUnavailable(f"`{' '.join(command)}` did not finish within {timeout_s:.0f} s") from exc
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise PrometheusUnavailable(f"`{' '.join(command)}` failed with exit code {result.returncode}:\n{tail}")


def ensure_prometheus() -> Path:
    binary = _installed()
    if binary is None:
        install_prometheus()
        binary = _installed()
        if binary is None:
            raise PrometheusUnavailable("apt-get installed prometheus but no `prometheus` executable is on the PATH")
    return binary


@pytest.fixture(scope="module")
def prometheus_binary() -> Path:
    try:
        return ensure_prometheus()
    except PrometheusUnavailable as exc:
        service_missing(f"Prometheus for the scrape test: {exc}")
        raise  # unreachable: service_missing skips or fails


class PrometheusProcess:
    """`prometheus` on 127.0.0.1 and a free port, its data and log under the test's tmp dir, stopped by its pid."""

    def __init__(self, binary: Path, config: Path, tmp: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = tmp / "prometheus.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(binary), f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent(),  # noqa: PLW1509
        )

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a Prometheus HTTP API answer; AssertionError (with the log) when the process is gone."""
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
        response = httpx.get(self.url + path, params=params, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {response.status_code} {body}"
        return body["data"]

    def answering(self) -> bool:
        try:
            return httpx.get(self.url + "/-/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}") from None
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", query=expr)
        return data["result"]  # type: ignore[no-any-return]

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if not self._log.closed:
            self._log.close()


# --- the scrape configuration, rewritten for the local stack -------------------------------------------------------

def local_scrape_config(real: dict[str, Any], local: dict[str, list[str]]) -> dict[str, Any]:
    """The production jobs with their targets replaced by local addresses. A production target `api:8000` becomes
    the local API, `worker-N:9100` the next local worker; every local process must be used exactly once."""
    config = copy.deepcopy(real)
    config["global"] = {**config.get("global", {}), "scrape_interval": LOCAL_SCRAPE_INTERVAL,
                        "scrape_timeout": LOCAL_SCRAPE_INTERVAL, "evaluation_interval": LOCAL_SCRAPE_INTERVAL}
    unused = {role: list(addresses) for role, addresses in local.items()}
    for job in config["scrape_configs"]:
        assert set(job) <= {"job_name", "metrics_path", "scheme", "static_configs", "scrape_interval",
                            "scrape_timeout", "honor_labels", "labels"}, f"rewrite {sorted(job)} for the local test"
        for static in job["static_configs"]:
            rewritten = []
            for target in static["targets"]:
                role = next((r for r in unused if target.split(":")[0].startswith(r)), None)
                assert role is not None and unused[role], f"no local process for target {target} of {job['job_name']}"
                rewritten.append(unused[role].pop(0))
            static["targets"] = rewritten
    assert not any(unused.values()), f"local processes no production job scrapes: {unused}"
    return config


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append((panel["title"], target["expr"].replace("$__rate_interval", "1m")))
    return out


# --- the test ---------------------------------------------------------------------------------------------------------

@pytest.fixture()
def local_stack(stack: Stack) -> Iterator[tuple[ApiProcess, list[WorkerProcess]]]:
    workers = [stack.start_worker(metrics=True), stack.start_worker(metrics=True)]
    api = ApiProcess({**stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN}, stack.tmp / "api.log")
    try:
        api.wait_answering("/readyz", 200, timeout=WAIT_S)
        yield api, workers
    finally:
        api.stop()


def test_prometheus_scrapes_the_api_and_both_workers_with_the_production_jobs(
    prometheus_binary: Path, local_stack: tuple[ApiProcess, list[WorkerProcess]], tmp_path: Path,
) -> None:
    api_process, workers = local_stack
    real = yaml.safe_load(SCRAPE_CONFIG.read_text())
    promtool = prometheus_binary.with_name("promtool")
    if promtool.exists():
        checked = subprocess.run([str(promtool), "check", "config", str(SCRAPE_CONFIG)], capture_output=True,
                                 text=True, timeout=120, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_scrape_config(real, {
        "api": [f"127.0.0.1:{api_process.port}"],
        "worker": [f"127.0.0.1:{worker.metrics_port}" for worker in workers],
    })))
    prometheus = PrometheusProcess(prometheus_binary, config, tmp_path)
    try:
        wait_until(prometheus.answering, WAIT_S, "Prometheus to be ready")

        def all_up() -> list[dict[str, Any]] | None:
            targets = prometheus.api("/api/v1/targets", state="active")["activeTargets"]
            return targets if len(targets) == 3 and all(t["health"] == "up" for t in targets) else None

        try:
            targets = wait_until(all_up, WAIT_S, "every scrape target to be up", interval=1)
        except AssertionError:
            seen = prometheus.api("/api/v1/targets", state="active")["activeTargets"]
            raise AssertionError(f"targets: {[(t['scrapeUrl'], t['health'], t['lastError']) for t in seen]}\n"
                                 f"worker log:\n{workers[0].log_tail()}\nprometheus log:\n{prometheus.log_tail()}") from None
        assert {t["labels"]["job"] for t in targets} == {job["job_name"] for job in real["scrape_configs"]}

        # traffic: registrations, hours that apply, a gift that the ledger refuses
        api = Api(api_process.url, ADMIN_TOKEN)
        try:
            suffix = uuid.uuid4().hex[:8]
            org = f"prom-org-{suffix}"
            api.organisation(org, ["community"], AREA, auto_approve=True)
            org_token = api.token("org", org_id=org)
            giver = api.volunteer(f"prom-a-{suffix}", AREA, member_of=(org,))
            taker = api.volunteer(f"prom-b-{suffix}", AREA)
            yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
            for minutes in (60, 90):
                api.applied(api.accepted(api.post("/v1/hours", org_token, {
                    "volunteer_id": giver, "org_id": org, "date": yesterday, "minutes": minutes,
                    "activity": "Food bank"})), org_token)
            giver_token = api.token("volunteer", volunteer_id=giver)
            refused = api.outcome(api.accepted(api.post("/v1/gifts", giver_token,
                                                        {"to_volunteer_id": taker, "amount": "50.00"})), giver_token)
            assert (refused["status"], refused["reason"]) == ("rejected", "insufficient_credits"), refused
        finally:
            api.close()

        def scraped_equals_exported() -> bool:
            exported = sum(w.metric("timecredits_events_applied_total") for w in workers)
            result = prometheus.query("sum(timecredits_events_applied_total)")
            return exported >= 2 and bool(result) and float(result[0]["value"][1]) == exported

        wait_until(scraped_equals_exported, WAIT_S, "Prometheus to hold the events the workers applied", interval=1)
        wait_until(lambda: any(r["metric"].get("reason") == "insufficient_credits" for r in prometheus.query(
            "sum by (reason) (timecredits_events_rejected_total)")), WAIT_S, "the rejection to reach Prometheus")

        queries = dashboard_queries()
        assert queries
        for title, expr in queries:
            prometheus.query(expr)  # a syntax error or an unknown function fails here, with Prometheus's message
        for title, expr in queries:
            if any(fed in expr for fed in FED_BY_THIS_TEST):
                wait_until(lambda expr=expr: prometheus.query(expr), WAIT_S, f"data for the panel {title!r}: {expr}")
    finally:
        prometheus.stop()
