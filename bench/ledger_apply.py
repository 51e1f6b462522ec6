"""How fast the repository applies batches: entries/s for batches of 1,000 on a fresh embedded PostgreSQL.

    python bench/ledger_apply.py [--events 100000] [--batch 1000]

Uses DATABASE_URL when set (the database must be empty and migrated, or migratable), else an embedded
PostgreSQL with durable settings (fsync on), in a temporary directory.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from itertools import islice
from pathlib import Path

from sqlalchemy import create_engine

from infra.embedded import EmbeddedPostgres
from infra.migrate import upgrade_to_head
from ledger.repository import LedgerRepository
from ledger.verify import verify_ledger
from timecredits.demo import demo_commands


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = os.environ.get("DATABASE_URL")
        if not url:
            server = EmbeddedPostgres(Path(tmp), durable=True)
            server.start()
            url = server.url
        try:
            upgrade_to_head(url)
            engine = create_engine(url)
            repository = LedgerRepository(engine)
            # A long demo programme gives a realistic mix of earning, booking, settling, spending and gifting.
            commands = list(islice(demo_commands(volunteers=5000, seed=1), args.events))
            started = time.perf_counter()
            latencies = []
            for start in range(0, len(commands), args.batch):
                t0 = time.perf_counter()
                repository.apply_batch(commands[start : start + args.batch])
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
            t0 = time.perf_counter()
            report = verify_ledger(engine)
            verify_s = time.perf_counter() - t0
            latencies.sort()
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
            print(f"applied {len(commands)} commands in batches of {args.batch}: {elapsed:.2f} s, "
                  f"{len(commands) / elapsed:,.0f} events/s")
            print(f"batch latency p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
                  f"max {latencies[-1] * 1000:.0f} ms")
            print(f"verify: {report.entries_checked} entries in {verify_s:.2f} s "
                  f"({report.entries_checked / verify_s:,.0f} entries/s), ok={report.ok}")
            engine.dispose()
        finally:
            if server:
                server.stop()


if __name__ == "__main__":
    main()
