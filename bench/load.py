"""GET the given paths with N keep-alive connections for a while, and print what came back:

    python -m bench.load http://127.0.0.1:8000 --token T --get /v1/volunteers/v1/balance --get /healthz \\
        [--concurrency 64] [--duration 60]

The load generator itself is timecredits.benchmark.mixload; `timecredits bench soak` drives the mixed workload.
"""
from __future__ import annotations

import argparse
import asyncio

from timecredits.benchmark.mixload import Call, Template, run_load


def main() -> None:
    parser = argparse.ArgumentParser(description="GET the given paths with N keep-alive connections for a while.")
    parser.add_argument("url")
    parser.add_argument("--get", action="append", required=True, help="a path to GET (repeat for a mix)")
    parser.add_argument("--token", help="sent as Authorization: Bearer <token>")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    templates = [Template(path, 1, lambda _, p=path: Call("GET", p, expect=range(200, 400), headers=headers))
                 for path in args.get]
    result = asyncio.run(run_load(args.url, templates, concurrency=args.concurrency, duration_s=args.duration,
                                  timeout_s=args.timeout))
    print(result.summary())
    for problem in result.unexpected:
        print("unexpected:", problem)


if __name__ == "__main__":
    main()
