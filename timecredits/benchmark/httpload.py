"""A lean HTTP/1.1 load generator: N keep-alive connections on asyncio streams, each sending GETs back to back.

Why not httpx: on the 2-core machine the load generator shares the cores with the server it measures, and
httpx spends much more CPU a request than a raw keep-alive loop, so the figure would be partly the client's
rather than the API's.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, one per completed request
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p)


def percentile(values: list[float], p: float) -> float:
    """The `p`-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


async def get_load(host: str, port: int, path_for: Callable[[int], str], headers: dict[str, str], *,
                   connections: int, seconds: float, warmup_s: float = 1.0) -> LoadResult:
    """GET `path_for(n)` on `connections` keep-alive connections for `seconds` (after `warmup_s` not counted)."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    result = LoadResult(seconds)
    start = time.perf_counter() + warmup_s
    stop = start + seconds

    async def client(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        n = index
        try:
            while True:
                sent = time.perf_counter()
                if sent >= stop:
                    return
                writer.write(f"GET {path_for(n)} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
                n += connections
                status = await _read_response(reader)
                done = time.perf_counter()
                if sent >= start:
                    result.latencies.append(done - sent)
                    result.statuses[status] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(connections)))
    return result


async def _read_response(reader: asyncio.StreamReader) -> int:
    header = await reader.readuntil(b"\r\n\r\n")
    status = int(header[9:12])
    length = 0
    for line in header.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    else:
        raise ValueError("the benchmark needs Content-Length responses")
    if length:
        await reader.readexactly(length)
    return status
