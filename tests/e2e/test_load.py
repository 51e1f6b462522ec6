"""The API under load: `timecredits bench soak`, the command that runs 256 clients for minutes, run here for 30 s.

It drives the real stack (two API processes, a ledger and a statistics worker, PostgreSQL, the broker) with the
mixed workload of timecredits.benchmark.mix and exits 0 only when every check passed: no 5xx and no transport
error, every answer one its kind may get, every accepted write decided exactly once with a reason the mix can
cause, `verify` clean. Speed is printed, never asserted.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.broker, pytest.mark.integration]

CLIENTS = 256
MINUTES = 0.5


def test_256_clients_get_no_5xx_and_every_accepted_write_is_decided_once(
    embedded_postgres: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    soak = subprocess.run(
        [sys.executable, "-m", "timecredits.cli", "bench", "soak", "--clients", str(CLIENTS), "--minutes",
         str(MINUTES), "--ceiling-seconds", "5", "--data-dir", str(tmp_path / "soak")],
        env={**os.environ, "DATABASE_URL": embedded_postgres, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
             "COLUMNS": "200"}, capture_output=True, text=True, timeout=900)
    print(f"\n{soak.stdout}\n(the command took {time.monotonic() - started:.0f} s)")
    assert soak.returncode == 0, soak.stdout[-6000:] + soak.stderr[-4000:]
    assert "passed: no 5xx, every accepted write decided exactly once, verify clean" in soak.stdout
    accepted = re.search(r"writes accepted \(202\) during the soak\s*│\s*([\d,]+)", soak.stdout)
    assert accepted and int(accepted.group(1).replace(",", "")) > 0, soak.stdout
