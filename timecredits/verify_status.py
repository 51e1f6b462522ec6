"""The last result of `timecredits verify`, kept in a small JSON file, and the Prometheus metrics the API
exports from it (docs/design.md §3.3, §6).

Verify runs in `up` (on its timer) or in `timecredits verify --status-file`, never in the API: the file is how
its result reaches the API's `/metrics`, where Prometheus already scrapes. The API reads it at each scrape, so
every API process exports the same values, and a missing file exports nothing (`absent()` in an alert).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from ledger.pg.verify import VerifyReport

STATUS_FORMAT = "timecredits-verify-status-1"


@dataclass(frozen=True, slots=True)
class VerifyStatus:
    ok: bool
    #: When the run ended, seconds since the epoch.
    finished_at: float
    duration_s: float
    #: Each check's name and whether it passed.
    checks: dict[str, bool]

    @classmethod
    def of(cls, report: VerifyReport, finished_at: float, duration_s: float) -> VerifyStatus:
        return cls(report.ok, finished_at, duration_s, report.results())


def write_status(path: Path, status: VerifyStatus) -> None:
    """Replace the file whole (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"format": STATUS_FORMAT, "ok": status.ok, "finished_at": status.finished_at,
                                   "duration_s": status.duration_s, "checks": status.checks}, indent=2) + "\n")
    os.replace(partial, path)


def read_status(path: Path) -> VerifyStatus | None:
    """The last result, or None when verify has not written one (or wrote something else)."""
    try:
        data = json.loads(path.read_text())
        if data.get("format") != STATUS_FORMAT:
            return None
        return VerifyStatus(bool(data["ok"]), float(data["finished_at"]), float(data["duration_s"]),
                            {str(name): bool(ok) for name, ok in data["checks"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class VerifyStatusCollector(Collector):
    """The metrics of the last verify, read from its status file at each scrape."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = read_status(self.path)
        if status is None:
            return
        yield GaugeMetricFamily("timecredits_verify_ok", "1 when the last verify found the ledger whole, else 0",
                                value=int(status.ok))
        checks = GaugeMetricFamily("timecredits_verify_check_ok", "1 when the check passed in the last verify",
                                   labels=["check"])
        for name, ok in sorted(status.checks.items()):
            checks.add_metric([name], int(ok))
        yield checks
        yield GaugeMetricFamily("timecredits_verify_last_run_timestamp_seconds",
                                "when the last verify ended, seconds since the epoch", value=status.finished_at)
        yield GaugeMetricFamily("timecredits_verify_duration_seconds", "how long the last verify took",
                                value=status.duration_s)


def export_verify_status(path: Path) -> None:
    """Add the verify metrics to this process's `/metrics` (once a process: the API's `api.main`)."""
    REGISTRY.register(VerifyStatusCollector(path))
