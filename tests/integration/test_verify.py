"""`timecredits verify` recomputes the chain and balances and names the first thing that does not match."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import Engine, text

from ledger.domain import BookOpportunity, EarnCredits, GiftCredits, RedeemCredits
from ledger.repository import LedgerRepository
from tests.ledger_helpers import NOW, new_id


def _run_verify(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "timecredits.cli", "verify"], env=env, capture_output=True, text=True, timeout=120
    )


def _fill(engine: Engine) -> None:
    LedgerRepository(engine).apply_batch(
        [
            EarnCredits(new_id(), NOW, "v1", "org1", 1000),
            EarnCredits(new_id(), NOW, "v2", "org1", 500),
            GiftCredits(new_id(), NOW, "v1", "v2", 100),
            BookOpportunity(new_id(), NOW, "v2", "p1", 200),
            RedeemCredits(new_id(), NOW, "v1", "p1", 300),
        ]
    )


def _tamper(engine: Engine, statement: str) -> None:
    """What only a superuser with the triggers switched off could do."""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(statement))


def test_verify_passes_on_an_honest_ledger(engine: Engine, database_url: str) -> None:
    _fill(engine)
    result = _run_verify(database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 5 entries (10 postings)" in result.stdout
    assert "ledger verified" in result.stdout


def test_verify_passes_on_an_empty_ledger(database_url: str) -> None:
    result = _run_verify(database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 0 entries" in result.stdout


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("UPDATE postings SET amount = amount * 2 WHERE entry_id = 3", "entry 3"),
        ("UPDATE entries SET occurred_at = occurred_at - interval '1 day' WHERE id = 2", "entry 2"),
        ("UPDATE entries SET volunteer_id = 'v9' WHERE id = 4", "entry 4"),
        ("DELETE FROM postings WHERE entry_id = 4", "entry 4"),
        ("DELETE FROM entries WHERE id = 2", "entry 3"),
        ("UPDATE balances SET balance = balance + 1 WHERE account_key = 'volunteer:v2'", "account volunteer:v2"),
        ("UPDATE entries SET hash = sha256('x') WHERE id = 5", "entry 5"),
    ],
    ids=["amount", "timestamp", "volunteer", "posting-removed", "entry-removed", "balance", "hash"],
)
def test_verify_names_the_tampered_row_and_exits_1(engine: Engine, database_url: str, statement: str, named: str) -> None:
    _fill(engine)
    _tamper(engine, statement)
    result = _run_verify(database_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MISMATCH" in result.stdout
    assert named in result.stdout
