"""An asyncio HTTP load generator: N keep-alive connections, each running requests back to back.

Used by `timecredits bench soak` (timecredits.benchmark.soak, which `tests/e2e/test_load.py` runs for a short
while) and from the command line by `bench/load.py`:

    python -m bench.load http://127.0.0.1:8000 --token T --get /v1/volunteers/v1/balance --get /healthz \\
        [--concurrency 64] [--duration 60]

A request is made by a `Template` (a kind, a weight and a function that builds a `Call`, or None when it has
nothing to send yet); each `Call` says which statuses it expects and may check the answer further. The
result keeps every latency, status counts and transport errors by kind, and samples of unexpected answers.
Only httpx and the standard library, so a benchmark can import it as well as a test.
"""
from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

_NO_BODY: Any = object()


@dataclass
class Call:
    """One HTTP request and what may come back from it."""

    method: str
    path: str
    expect: Collection[int]
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = _NO_BODY
    content: bytes | None = None
    params: Mapping[str, Any] | None = None
    check: Callable[[httpx.Response], str | None] | None = None
    """A further look at an expected answer: a description of what is wrong, or None."""
    on_response: Callable[[httpx.Response], None] | None = None
    """Told of every answer (expected or not), e.g. to keep the event ids of accepted writes."""


@dataclass
class Template:
    kind: str
    weight: float
    make: Callable[[random.Random], Call | None]


@dataclass
class KindResult:
    latencies: list[float] = field(default_factory=list)
    """Seconds, of every request that got an answer."""
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    """Transport errors (timeouts, refused or dropped connections) by exception type."""
    unexpected: list[str] = field(default_factory=list)
    """Answers with a status not expected, or that failed their check (the first few of each kind)."""
    unexpected_count: int = 0
    skipped: int = 0


@dataclass
class LoadResult:
    concurrency: int
    elapsed_s: float
    kinds: dict[str, KindResult]

    @property
    def requests(self) -> int:
        return sum(len(k.latencies) + sum(k.errors.values()) for k in self.kinds.values())

    @property
    def statuses(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for kind in self.kinds.values():
            total.update(kind.statuses)
        return total

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for kind in self.kinds.values():
            total.update(kind.errors)
        return total

    @property
    def unexpected(self) -> list[str]:
        return [f"{name}: {problem}" for name, kind in self.kinds.items() for problem in kind.unexpected]

    @property
    def unexpected_count(self) -> int:
        return sum(k.unexpected_count for k in self.kinds.values())

    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def latencies(self) -> list[float]:
        return [x for k in self.kinds.values() for x in k.latencies]

    def summary(self) -> str:
        every = self.latencies()
        rate = self.requests / self.elapsed_s if self.elapsed_s else 0.0
        lines = [
            f"{self.requests} requests in {self.elapsed_s:.1f} s over {self.concurrency} connections: "
            f"{rate:.0f} req/s; latency {_describe(every)}",
            f"statuses {dict(sorted(self.statuses.items()))}; transport errors {dict(self.errors) or 0}; "
            f"unexpected answers {self.unexpected_count}",
            f"{'kind':<24}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  statuses",
        ]
        for name, kind in sorted(self.kinds.items()):
            if not kind.latencies and not kind.errors:
                continue
            p50, p99, top = (percentile(kind.latencies, q) * 1000 for q in (50, 99, 100))
            lines.append(f"{name:<24}{len(kind.latencies) + sum(kind.errors.values()):>9}{p50:>9.1f}{p99:>9.1f}"
                         f"{top:>9.1f}  {dict(sorted(kind.statuses.items()))}"
                         + (f" errors {dict(kind.errors)}" if kind.errors else ""))
        return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _describe(latencies: Sequence[float]) -> str:
    if not latencies:
        return "n/a"
    return " ".join(f"p{q}={percentile(latencies, q) * 1000:.1f} ms" for q in (50, 90, 99)) + \
        f" max={max(latencies) * 1000:.1f} ms"


class _Recorder:
    def __init__(self, max_samples: int) -> None:
        self.kinds: dict[str, KindResult] = {}
        self.max_samples = max_samples

    def kind(self, name: str) -> KindResult:
        return self.kinds.setdefault(name, KindResult())

    async def send(self, client: httpx.AsyncClient, name: str, call: Call) -> None:
        result = self.kind(name)
        options: dict[str, Any] = {"headers": dict(call.headers), "params": call.params}
        if call.content is not None:
            options["content"] = call.content
        elif call.json is not _NO_BODY:
            options["json"] = call.json
        started = time.perf_counter()
        try:
            response = await client.request(call.method, call.path, **options)
        except httpx.HTTPError as exc:
            result.errors[type(exc).__name__] += 1
            self._note(result, f"{call.method} {call.path}: {type(exc).__name__} after "
                               f"{time.perf_counter() - started:.3f} s: {exc}")
            return
        result.latencies.append(time.perf_counter() - started)
        result.statuses[response.status_code] += 1
        problem = None
        if response.status_code not in call.expect:
            problem = f"status {response.status_code} not in {sorted(call.expect)}"
        elif call.check is not None:
            try:
                problem = call.check(response)
            except Exception as exc:  # noqa: BLE001 - a check that cannot read the answer is an unexpected answer
                problem = f"check failed: {type(exc).__name__}: {exc}"
        if problem is not None:
            self._note(result, f"{call.method} {call.path}: {problem}: {response.text[:300]}")
        if call.on_response is not None:
            call.on_response(response)

    def _note(self, result: KindResult, problem: str) -> None:
        result.unexpected_count += 1
        if len(result.unexpected) < self.max_samples:
            result.unexpected.append(problem)


def _client(base_url: str, timeout_s: float, tls: ssl.SSLContext) -> httpx.AsyncClient:
    """One simulated client: an httpx client of its own on one keep-alive connection.

    Why not one client shared by all: httpcore's pool walks every connection for every request it assigns, so with
    256 connections in one pool the load generator spent its CPU there and sent a few requests a second. The TLS
    context is made once and shared: httpx would make one a client (tens of milliseconds each), even for http."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=None)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(timeout_s), verify=tls)


async def run_load(base_url: str, templates: Sequence[Template], *, concurrency: int = 64, duration_s: float = 60,
                   timeout_s: float = 30, seed: int = 0, max_samples: int = 5) -> LoadResult:
    """`concurrency` clients, each sending one request after another, picked by weight, for `duration_s`."""
    recorder = _Recorder(max_samples)
    tls = ssl.create_default_context()
    weights = [t.weight for t in templates]
    deadline = time.monotonic() + duration_s

    async def client_loop(rng: random.Random) -> None:
        async with _client(base_url, timeout_s, tls) as client:
            while time.monotonic() < deadline:
                template = rng.choices(templates, weights)[0]
                call = template.make(rng)
                if call is None:
                    recorder.kind(template.kind).skipped += 1
                    await asyncio.sleep(0)
                    continue
                await recorder.send(client, template.kind, call)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(random.Random(f"{seed}-{n}")) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    return LoadResult(concurrency, elapsed, recorder.kinds)


async def run_each(base_url: str, calls: Iterable[tuple[str, Call]], *, concurrency: int = 16,
                   timeout_s: float = 30, max_samples: int = 5) -> LoadResult:
    """Every (kind, call) once, `concurrency` at a time: for setting up a world, or checking outcomes after."""
    recorder = _Recorder(max_samples)
    tls = ssl.create_default_context()
    queue = iter(calls)

    async def client_loop() -> None:
        async with _client(base_url, timeout_s, tls) as client:
            for name, call in queue:  # one shared iterator: each call is taken by exactly one client
                await recorder.send(client, name, call)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return LoadResult(concurrency, elapsed, recorder.kinds)
