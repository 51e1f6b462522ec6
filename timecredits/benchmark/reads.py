"""Figure 4: balance reads through the API at 64 concurrent connections."""
from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from timecredits.benchmark.httpload import LoadResult, get_load
from timecredits.benchmark.workload import volunteer_id


def run_reads(api_url: str, token: str, volunteers: int, *, connections: int = 64, seconds: float = 15.0) -> LoadResult:
    """GET /v1/volunteers/{id}/balance for volunteers in turn, as fast as `connections` keep-alive clients go."""
    parts = urlsplit(api_url)
    assert parts.hostname and parts.port
    return asyncio.run(get_load(parts.hostname, parts.port,
                                lambda n: f"/v1/volunteers/{volunteer_id(n * 7919 % volunteers)}/balance",
                                {"Authorization": f"Bearer {token}"}, connections=connections, seconds=seconds))
