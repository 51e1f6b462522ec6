"""How fast a worker's transaction applies batches of events (decoding, rules, ledger, hours flow), no Kafka,
and what writing the statistics facts of each batch would add to it.

    python bench/ledger_apply.py [--events 100000] [--batch 1000]

The facts are timed in a transaction of their own right after each batch: what they would add to the ledger's
transaction were they written in it (docs/design.md §5.2 says why they are not).

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
from ledger.events import decode_event, encode_event
from ledger.pg.processing import EventProcessor
from ledger.pg.verify import verify_ledger
from stats.facts import write_facts
from timecredits import demo


def _decoded(event: demo.DemoEvent):  # type: ignore[no-untyped-def]
    _, raw = encode_event(event.payload, actor="bench", event_id=event.event_id, occurred_at=event.occurred_at)
    return decode_event(raw)


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
            processor = EventProcessor(engine)
            processor.process([_decoded(e) for e in demo.registry(volunteers=5000)])
            # A long demo programme gives a realistic mix of earning, booking, settling, spending and gifting.
            commands = [_decoded(e) for e in islice(demo.activity(volunteers=5000, days=3650), args.events)]
            started = time.perf_counter()
            latencies = []
            facts_s = 0.0
            for start in range(0, len(commands), args.batch):
                t0 = time.perf_counter()
                result = processor.process(commands[start : start + args.batch])
                t1 = time.perf_counter()
                latencies.append(t1 - t0)
                write_facts(engine, result.committed)
                facts_s += time.perf_counter() - t1
            elapsed = time.perf_counter() - started - facts_s
            t0 = time.perf_counter()
            report = verify_ledger(engine)
            verify_s = time.perf_counter() - t0
            latencies.sort()
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
            print(f"processed {len(commands)} events in batches of {args.batch}: {elapsed:.2f} s, "
                  f"{len(commands) / elapsed:,.0f} events/s")
            print(f"batch latency p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
                  f"max {latencies[-1] * 1000:.0f} ms")
            print(f"statistics facts of the same batches: {facts_s:.2f} s, {facts_s / elapsed * 100:.0f} % "
                  "on top of the ledger's transactions")
            print(f"verify: {report.entries_checked} entries in {verify_s:.2f} s "
                  f"({report.entries_checked / verify_s:,.0f} entries/s), ok={report.ok}")
            print(f"  hash chain and balances {report.chain_seconds:.2f} s; "
                  + "; ".join(f"{check.name} {check.seconds:.2f} s" for check in report.checks))
            engine.dispose()
        finally:
            if server:
                server.stop()


if __name__ == "__main__":
    main()
