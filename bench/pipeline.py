"""The end-to-end benchmarks (docs/performance.md); the same as `timecredits bench`.

    python bench/pipeline.py [--events 200000] [--rate 2000] [--latency-seconds 30] [--read-seconds 15]
"""
from timecredits.cli import app

if __name__ == "__main__":
    app(["bench", *__import__("sys").argv[1:]])
