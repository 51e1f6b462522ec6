"""Figure 5 of docs/performance.md alone: every breakdown of a programme of 100,000 volunteers over ten years.

    python bench/breakdowns.py [--statistics-volunteers 100000] [--statistics-years 10]
"""
from timecredits.cli import app

if __name__ == "__main__":
    app(["bench", "--no-ingest", "--no-api", *__import__("sys").argv[1:]])
