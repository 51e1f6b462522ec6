"""Figure 3: from produce to balance visible through the API, at a steady background rate.

Background events from the workload are produced at `rate` events/s; every `probe_every` of them a probe is
produced too: one hour earned by a volunteer of its own, whose balance is 0.00 until then. A poller asks the
API for that balance every few milliseconds and records the time from `send()` to the first answer showing
1.00. The poll interval bounds the resolution, so it is kept well under the latencies measured.
"""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from timecredits.benchmark.httpload import percentile
from timecredits.benchmark.stack import Scenario
from timecredits.benchmark.workload import CLUBS, Record, probe

#: 20 ms: fine enough against a 250 ms target, and 64 outstanding probes polled every 5 ms would themselves be
#: thousands of requests a second on the 2 cores the pipeline runs on.
POLL_INTERVAL_S = 0.02
#: The background's pacing: a sleep for each of thousands of events a second would cost the load generator more
#: than sending them.
PACING_TICK_S = 0.002


@dataclass(frozen=True)
class LatencyResult:
    rate: float
    achieved_rate: float
    probes: int
    latencies: list[float]
    lost: int

    def percentile_ms(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000


def probe_volunteer(n: int) -> str:
    return f"probe{n:05d}"  # as registered by workload.probe_registry


def run_latency(run: Scenario, api_url: str, token: str, background: list[Record], *, rate: float,
                probes: int, probe_every: int, first_probe: int = 0, timeout_s: float = 120.0) -> LatencyResult:
    rng = random.Random(11 + first_probe)  # each run's probes are new events, never repeats of another run's
    latencies: list[float] = []
    lost = 0
    lock = threading.Lock()

    # One client for every watcher (httpx's Client is thread-safe): a client a probe would build an SSL context
    # each time, even for plain HTTP, taking CPU from the cores being measured.
    client = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def watch(volunteer: str, sent_at: float) -> None:
        nonlocal lost
        while time.perf_counter() - sent_at < timeout_s:
            answer = client.get(f"/v1/volunteers/{volunteer}/balance")
            if answer.status_code == 200 and answer.json()["balance"] == "1.00":
                with lock:
                    latencies.append(time.perf_counter() - sent_at)
                return
            time.sleep(POLL_INTERVAL_S)
        with lock:
            lost += 1

    sent = 0
    # Two producers: the background traffic is batched as any busy client's is (5 ms linger), while each probe
    # leaves at once on a producer of its own. One unbatched producer for both would make a produce request per
    # background event, and that client and the broker would take CPU from the cores being measured.
    with client, ThreadPoolExecutor(max_workers=16, thread_name_prefix="probe-watch") as watchers, \
            run.producer(linger_ms=5) as producer, run.producer(linger_ms=0) as probe_producer:
        started = time.perf_counter()
        next_probe = 0
        for n, record in enumerate(background):
            due = started + n / rate
            pause = due - time.perf_counter()
            if pause > PACING_TICK_S:  # events due within a tick leave together, as a busy client's would
                time.sleep(pause)
            run.send(producer, record)
            sent += 1
            if n % probe_every == 0 and next_probe < probes:
                volunteer = probe_volunteer(first_probe + next_probe)
                at = datetime.now(UTC)
                record = probe(volunteer, CLUBS[next_probe % len(CLUBS)], rng, at)
                sent_at = time.perf_counter()
                run.send(probe_producer, record)
                probe_producer.flush()  # the probe leaves now
                watchers.submit(watch, volunteer, sent_at)
                next_probe += 1
        elapsed = time.perf_counter() - started
    return LatencyResult(rate, sent / elapsed, len(latencies) + lost, latencies, lost)
