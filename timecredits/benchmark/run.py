"""`timecredits bench`: start the stack, measure each figure beside its ceiling in the same run, print them."""
from __future__ import annotations

import os
import platform
import tempfile
import threading
from datetime import UTC, date, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from api.auth import Role, create_token, new_token
from infra.services import running_services
from timecredits.benchmark import workload
from timecredits.benchmark.ceiling import CeilingResult, run_ceiling, run_plain_ceiling
from timecredits.benchmark.httpload import LoadResult
from timecredits.benchmark.ingest import IngestResult, run_ingest
from timecredits.benchmark.latency import LatencyResult, probe_volunteer, run_latency
from timecredits.benchmark.reads import run_reads
from timecredits.benchmark.stack import Scenario, scenario, wait_for
from stats.queries import last_twelve_months
from timecredits.benchmark.statistics import StatisticsResult, run_statistics, statistics_table
from timecredits.settings import Settings

VOLUNTEERS = 20_000


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    memory = ""
    if Path("/proc/meminfo").exists():
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}"


def run_all(settings: Settings, *, events: int, latency_seconds: float, read_seconds: float, rate: float,
            data_dir: Path | None, console: Console, ingest_figures: bool = True, api_figures: bool = True,
            statistics_programme: tuple[int, int] | None = None) -> None:
    console.print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as tmp:
        directory = data_dir or Path(tmp)
        with running_services(settings, directory / "services", durable=True) as endpoints:
            assert endpoints.database_url and endpoints.kafka_bootstrap_servers
            server, bootstrap = endpoints.database_url, endpoints.kafka_bootstrap_servers
            console.print(f"PostgreSQL {server.rsplit('@', 1)[-1]} (durable), broker {bootstrap}")
            registry = workload.registry(VOLUNTEERS)
            activity: list[workload.Record] = []
            if ingest_figures:
                console.print(f"workload: {len(registry)} registry events, {events:,} activity events (seed 6)…")
                activity = list(workload.activity(events, VOLUNTEERS))

            ingest: list[IngestResult] = []
            ceiling = plain = None
            for workers in (1, 2) if ingest_figures else ():
                with scenario(f"ingest-{workers}w", server, bootstrap, directory) as run:
                    console.print(f"ingest with {workers} worker(s)…")
                    ingest.append(run_ingest(run, workers, registry, activity))
                    console.print(f"  {ingest[-1].per_second:,.0f} events/s")
                    if workers == 1:
                        with scenario("ceiling", server, bootstrap, directory) as target:
                            console.print("ceiling: the same ledger rows, one INSERT per 1,000 rows…")
                            ceiling = run_ceiling(run.engine, target.database_url)
                            console.print(f"  {ceiling.entries_per_second:,.0f} entries/s")
                        with scenario("plain", server, bootstrap, directory) as target:
                            console.print("plain ceiling: an entry and two postings an event, keys only…")
                            plain = run_plain_ceiling(target.database_url, len(activity))
                            console.print(f"  {plain.entries_per_second:,.0f} events/s")

            api: tuple[list[LatencyResult], LoadResult | None, LoadResult | None] = ([], None, None)
            if api_figures:
                with scenario("api", server, bootstrap, directory) as run:
                    api = _api_figures(run, registry, rate, latency_seconds, read_seconds, console)
            figures: StatisticsResult | None = None
            if statistics_programme is not None:
                with scenario("statistics", server, bootstrap, directory) as run:
                    volunteers, years = statistics_programme
                    start, end = last_twelve_months(date.today())
                    console.print(f"statistics: {volunteers:,} volunteers, {years} years of facts…")
                    figures = run_statistics(run.engine, start, end, volunteers=volunteers, years=years,
                                             progress=console.print)
    _report(console, ingest, ceiling, plain, *api)
    if figures is not None:
        console.print(statistics_table(figures))


def _api_figures(run: Scenario, registry: list[workload.Record], rate: float, latency_seconds: float,
                 read_seconds: float, console: Console) -> tuple[list[LatencyResult], LoadResult, LoadResult]:
    probes = int(latency_seconds * 10)  # a run; two runs
    workers = run.start_workers(2)
    with run.producer() as producer:
        for record in [*registry, *workload.probe_registry(2 * probes)]:
            run.send(producer, record)
    wait_for(lambda: run.volunteers() >= VOLUNTEERS + 2 * probes, 180, "the registry to be applied", workers)
    members = workload.memberships([workload.volunteer_id(n) for n in range(VOLUNTEERS)]
                                   + [probe_volunteer(n) for n in range(2 * probes)])
    with run.producer() as producer:
        for record in members:
            run.send(producer, record)
    wait_for(lambda: run.members() >= len(members), 180, "the memberships to be applied", workers)
    admin = new_token()
    url = run.start_api(admin, workers=2)  # one uvicorn process a core
    # An admin token reads any balance (a lead reads statistics, not balances: docs/design.md §5.1), and it is
    # what the API's fast path answers.
    token, _ = create_token(run.engine, Role.ADMIN, label="bench")
    # Some credits first, so that balance reads find ledger rows.
    warm = list(workload.activity(20_000, VOLUNTEERS, seed=8))
    with run.producer() as producer:
        for record in warm:
            run.send(producer, record)
    wait_for(lambda: run.decided() >= len(warm), 300, "the warm-up events", workers)
    console.print(f"API reads, idle, 64 connections, {read_seconds:.0f} s…")
    idle = run_reads(url, token, VOLUNTEERS, seconds=read_seconds)
    console.print(f"  {idle.per_second:,.0f} req/s, p99 {idle.percentile(99) * 1000:.1f} ms")

    latency: list[LatencyResult] = []
    # Half the rate first: where the pipeline keeps up, latency is the pipeline's; at a rate beyond what the
    # workers sustain, it is mostly the queue in front of them. Each run starts with nothing queued.
    for n, steady in enumerate((rate / 2, rate)):
        background = list(workload.activity(int(steady * latency_seconds), VOLUNTEERS, seed=9 + n,
                                            start=datetime(2026, 11, 15 + n, tzinfo=UTC)))
        first = len(latency) * probes
        console.print(f"latency at {steady:,.0f} events/s for {latency_seconds:.0f} s, {probes} probes…")
        before = run.decided()
        latency.append(run_latency(run, url, token, background, rate=steady, probes=probes,
                                   probe_every=max(1, int(steady / 10)), first_probe=first))
        console.print(f"  p50 {latency[-1].percentile_ms(50):.0f} ms, p99 {latency[-1].percentile_ms(99):.0f} ms")
        wait_for(lambda: run.decided() - before >= len(background) + probes, 1800, "the queue to drain", workers)

    backlog = list(workload.activity(100_000, VOLUNTEERS, seed=10,
                                     start=datetime(2026, 11, 20, tzinfo=UTC)))
    before = run.decided()
    console.print(f"API reads while {len(backlog):,} events are ingested…")
    feeder = threading.Thread(target=_produce_all, args=(run, backlog), name="bench-backlog")
    feeder.start()
    wait_for(lambda: run.decided() - before > 2_000, 120, "ingest to get going", workers)
    busy = run_reads(url, token, VOLUNTEERS, seconds=read_seconds)
    applied_during = run.decided() - before
    console.print(f"  {busy.per_second:,.0f} req/s, p99 {busy.percentile(99) * 1000:.1f} ms "
                  f"({applied_during:,} events decided meanwhile)")
    feeder.join()
    return latency, idle, busy


def _produce_all(run: Scenario, records: list[workload.Record]) -> None:
    with run.producer() as producer:
        for record in records:
            run.send(producer, record)


def _report(console: Console, ingest: list[IngestResult], ceiling: CeilingResult | None,
            plain: CeilingResult | None, latencies: list[LatencyResult], idle: LoadResult | None,
            busy: LoadResult | None) -> None:
    table = Table(title="timecredits bench", show_lines=False)
    table.add_column("figure")
    table.add_column("result", justify="right")
    table.add_column("target", justify="right")
    for result in ingest:
        table.add_row(f"1. ingest, {result.workers} worker(s), {result.events:,} events",
                      f"{result.per_second:,.0f} events/s (steady {result.steady_per_second:,.0f}); "
                      f"verify {'ok' if result.verified else 'FAILED'}", "≥ 10,000/s")
    if ceiling is not None:
        ratios = ", ".join(f"{r.workers} worker(s) {r.per_second / ceiling.entries_per_second:.2f}" for r in ingest)
        table.add_row(f"2a. same-schema ceiling: {ceiling.entries:,} entries, {ceiling.postings:,} postings, "
                      "INSERT per 1,000 entries", f"{ceiling.entries_per_second:,.0f} entries/s; ingest ÷ it: {ratios}", "")
    if plain is not None:
        ratios = ", ".join(f"{r.workers} worker(s) {r.per_second / plain.entries_per_second:.2f}" for r in ingest)
        table.add_row(f"2b. plain ceiling: {plain.entries:,} events as an entry and two postings, keys only",
                      f"{plain.entries_per_second:,.0f} events/s; ingest ÷ it: {ratios}", "ratio ≥ 0.5")
    for latency in latencies:
        table.add_row(f"3. produce → balance visible, {latency.achieved_rate:,.0f} events/s, {latency.probes} probes",
                      f"p50 {latency.percentile_ms(50):.0f} / p95 {latency.percentile_ms(95):.0f} / "
                      f"p99 {latency.percentile_ms(99):.0f} ms; lost {latency.lost}",
                      "p99 < 250 ms at 2,000/s" if latency is latencies[-1] else "")
    for name, result in (("idle", idle), ("while ingesting", busy)):
        if result is None:
            continue
        errors = sum(n for status, n in result.statuses.items() if status != 200) + result.errors
        table.add_row(f"4. balance reads, 64 connections, {name}",
                      f"{result.per_second:,.0f} req/s, p50 {result.percentile(50) * 1000:.1f} / "
                      f"p99 {result.percentile(99) * 1000:.1f} ms; non-200 {errors}",
                      "≥ 3,000/s, p99 < 50 ms" if name == "idle" else "")
    console.print(table)
