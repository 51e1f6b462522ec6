"""End-to-end benchmarks of the whole stack (`timecredits bench`, `bench/pipeline.py`): they print figures, never assert speed."""
