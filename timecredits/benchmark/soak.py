"""`timecredits bench soak`: many clients on the mixed workload (timecredits.benchmark.mix) for minutes against
the real stack (two API processes, a ledger and a statistics worker, PostgreSQL, the broker), then the checks:
no 5xx and no transport error, every answer one its kind may get, every accepted (202) write decided exactly once
with a reason the mix can cause, `verify` clean. Prints the figures beside a ceiling measured in the same run:
balance reads (the API's fast path) from a lean client on as many connections, before the soak.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import psutil
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from api.auth import Role, create_token, new_token
from infra.services import running_services
from ledger.pg.processing import count_decided, event_outcomes
from ledger.pg.verify import verify_ledger
from timecredits.benchmark import mix
from timecredits.benchmark.httpload import LoadResult as CeilingResult
from timecredits.benchmark.httpload import get_load
from timecredits.benchmark.mixload import LoadResult, percentile, run_load
from timecredits.benchmark.stack import Scenario, scenario, wait_for
from timecredits.settings import Settings

API_PROCESSES = 2  # one a core
CLIENT_TIMEOUT_S = 30.0
#: Every simulated client shares 127.0.0.1 and the mix sends bad tokens on purpose: the per-address limit on
#: refused authentications (docs/design.md §5.5) is for one guessing client, not for a whole population.
API_ENV = {"TIMECREDITS_RATE_AUTH_FAILURES_PER_MIN": "10000000", "TIMECREDITS_RATE_AUTH_FAILURES_BURST": "1000000"}


@dataclass
class SoakResult:
    clients: int
    load: LoadResult
    ceiling: CeilingResult
    accepted: int  # writes answered 202 during the soak
    decided: int  # of them, decided (applied or rejected) once the workers drained
    doubled: int  # of them, with more than one entry or more than one rejection
    drain_s: float  # from the end of the soak until every accepted write was decided
    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (kind, status, reason)
    verify_problem: str | None = None
    api_errors_logged: int = 0
    setup_s: float = 0.0
    #: CPU-seconds each part of the stack used during the soak: where the two cores went.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def unexpected_reasons(self) -> set[str]:
        return {reason for (_, status, reason) in self.outcomes if status == "rejected"} - mix.REJECTION_REASONS

    def problems(self) -> list[str]:
        """What went wrong, in words; empty when every check passed."""
        found = []
        if self.load.server_errors():
            found.append(f"{self.load.server_errors()} answers were 5xx: {dict(self.load.statuses)}")
        if self.load.errors:
            found.append(f"transport errors: {dict(self.load.errors)}")
        if self.load.unexpected_count:
            found.append(f"{self.load.unexpected_count} answers not expected for their kind, e.g.\n  "
                         + "\n  ".join(self.load.unexpected[:10]))
        if not self.accepted:
            found.append("no write was accepted")
        if self.decided != self.accepted:
            found.append(f"{self.accepted - self.decided} accepted writes were never decided")
        if self.doubled:
            found.append(f"{self.doubled} accepted writes were decided more than once")
        if self.unexpected_reasons:
            found.append(f"rejections the mix cannot cause: {sorted(self.unexpected_reasons)}")
        if self.verify_problem:
            found.append(f"verify: {self.verify_problem}")
        if self.api_errors_logged:
            found.append(f"the API logged {self.api_errors_logged} unexpected errors")
        return found


def run_soak(settings: Settings, *, clients: int, seconds: float, ceiling_seconds: float, data_dir: Path | None,
             console: Console) -> SoakResult:
    from timecredits.benchmark.run import machine

    console.print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="tc-soak-") as tmp:
        directory = data_dir or Path(tmp)
        with running_services(settings, directory / "services", durable=True) as endpoints:
            assert endpoints.database_url and endpoints.kafka_bootstrap_servers
            with scenario("soak", endpoints.database_url, endpoints.kafka_bootstrap_servers, directory) as run:
                result = _soak(run, clients, seconds, ceiling_seconds, console)
    _report(console, result)
    return result


def _soak(run: Scenario, clients: int, seconds: float, ceiling_seconds: float, console: Console) -> SoakResult:
    started = time.monotonic()
    workers = run.start_workers(1)
    admin = new_token()
    url = run.start_api(admin, workers=API_PROCESSES, env=API_ENV)
    console.print(f"world: {len(mix.ORGANISATIONS)} organisations, {mix.VOLUNTEERS} volunteers with credits, "
                  "tokens of every role, through the API…")
    world = mix.create_world(url, admin)
    seeded = [UUID(e) for e in world.accepted]
    wait_for(lambda: count_decided(run.engine, seeded) == len(seeded), 300, "the world's hours", workers)
    setup_s = time.monotonic() - started

    console.print(f"ceiling: balance reads, {clients} connections of a lean client, {ceiling_seconds:.0f} s…")
    ceiling = _ceiling(run, url, world.volunteer_ids, clients, ceiling_seconds)
    console.print(f"  {ceiling.per_second:,.0f} req/s")

    console.print(f"soak: {clients} clients on the mixed workload for {seconds:,.0f} s…")
    before = set(world.accepted)
    cpu_before = _cpu_seconds(run)
    load = asyncio.run(run_load(url, mix.templates(world), concurrency=clients, duration_s=seconds,
                                timeout_s=CLIENT_TIMEOUT_S, seed=6))
    cpu = {part: used - cpu_before.get(part, 0.0) for part, used in _cpu_seconds(run).items()}
    console.print(f"  {load.requests:,} requests, {load.requests / load.elapsed_s:,.0f} req/s")
    during = [UUID(e) for e in world.accepted if e not in before]
    ended = time.monotonic()
    try:
        wait_for(lambda: count_decided(run.engine, during) == len(during), 600, "the accepted writes", workers,
                 interval=0.5)
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
    drain_s = time.monotonic() - ended

    with run.engine.connect() as conn:
        outcomes = event_outcomes(conn, during)
        doubled = int(conn.execute(text(
            "SELECT count(*) FROM (SELECT event_id FROM entries WHERE event_id = ANY(CAST(:ids AS uuid[])) "
            "GROUP BY event_id HAVING count(*) > 1 UNION ALL SELECT event_id FROM rejections "
            "WHERE event_id = ANY(CAST(:ids AS uuid[])) GROUP BY event_id HAVING count(*) > 1) AS twice"),
            {"ids": [str(i) for i in during]}).scalar_one())
    by_kind: Counter[tuple[str, str, str]] = Counter()
    for event_id, outcome in outcomes.items():
        by_kind[(world.accepted[str(event_id)][0], outcome.status, outcome.reason or "")] += 1
    api_log = run.directory / run.name / "api.log"
    run.stop_children()
    report = verify_ledger(run.engine)
    return SoakResult(clients, load, ceiling, len(during), len(outcomes), doubled, drain_s, by_kind,
                      report.problem, api_log.read_text(errors="replace").count("unexpected error on"), setup_s, cpu)


def _cpu_seconds(run: Scenario) -> dict[str, float]:
    """CPU-seconds so far of the load generator (this process) and of each kind of child, with their children."""
    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:  # exited meanwhile
            return 0.0

    found = {"the load generator (httpx, one process)": used(psutil.Process())}
    for child in run.children:
        part = {"api": "API processes", "statistics": "statistics worker"}.get(child.name, "ledger worker(s)")
        root = psutil.Process(child.pid)
        found[part] = found.get(part, 0.0) + used(root) + sum(used(p) for p in root.children(recursive=True))
    return found


def _ceiling(run: Scenario, url: str, volunteers: list[str], connections: int, seconds: float) -> CeilingResult:
    """Balance reads as fast as `connections` keep-alive connections of the raw asyncio client go: the API's
    cheapest authenticated answer, with nothing else on the stack."""
    token, _ = create_token(run.engine, Role.ADMIN, label="soak ceiling")
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return asyncio.run(get_load(parts.hostname, parts.port,
                                lambda n: f"/v1/volunteers/{volunteers[n * 7919 % len(volunteers)]}/balance",
                                {"Authorization": f"Bearer {token}"}, connections=connections, seconds=seconds))


def _report(console: Console, result: SoakResult) -> None:
    load, ceiling = result.load, result.ceiling
    rate = load.requests / load.elapsed_s if load.elapsed_s else 0.0
    every = load.latencies()
    table = Table(title="timecredits bench soak", show_lines=False)
    table.add_column("figure")
    table.add_column("result", justify="right")
    table.add_row(f"mixed workload, {result.clients} clients, {load.elapsed_s:,.0f} s",
                  f"{load.requests:,} requests, {rate:,.0f} req/s; p50 {percentile(every, 50) * 1000:.0f} / "
                  f"p95 {percentile(every, 95) * 1000:.0f} / p99 {percentile(every, 99) * 1000:.0f} ms")
    table.add_row("statuses", ", ".join(f"{status}: {n:,}" for status, n in sorted(load.statuses.items())))
    table.add_row("5xx; transport errors; unexpected answers",
                  f"{load.server_errors()}; {sum(load.errors.values())}; {load.unexpected_count}")
    table.add_row(f"ceiling: balance reads, {result.clients} connections, lean client, nothing else running",
                  f"{ceiling.per_second:,.0f} req/s, p50 {ceiling.percentile(50) * 1000:.0f} / "
                  f"p99 {ceiling.percentile(99) * 1000:.0f} ms; the mix ÷ it "
                  f"{rate / ceiling.per_second if ceiling.per_second else 0:.2f}")
    table.add_row("writes accepted (202) during the soak", f"{result.accepted:,}")
    table.add_row("decided once; decided twice; never decided",
                  f"{result.decided - result.doubled:,}; {result.doubled}; {result.accepted - result.decided}")
    table.add_row("drained after the soak", f"{result.drain_s:.1f} s")
    table.add_row("verify", "ok" if result.verify_problem is None else f"FAILED: {result.verify_problem}")
    cores = os.cpu_count() or 1
    available = cores * load.elapsed_s if load.elapsed_s else 1.0
    for part, seconds in result.cpu.items():
        table.add_row(f"CPU during the soak: {part}", f"{seconds:,.0f} s ({seconds / available:.0%} of {cores} cores)")
    console.print(table)
    console.print(load.summary())
    console.print("outcomes of the writes accepted during the soak:")
    for (kind, status, reason), n in sorted(result.outcomes.items()):
        console.print(f"  {kind:<24}{status:<9}{reason:<22}{n:>8,}")
    problems = result.problems()
    if problems:
        console.print("[red]FAILED:[/red]\n" + "\n".join(f"- {p}" for p in problems))
    else:
        console.print("passed: no 5xx, every accepted write decided exactly once, verify clean")
