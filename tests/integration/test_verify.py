"""`timecredits verify` recomputes every entry hash, batch link and balance, and names the first thing that does
not match; with heads exported earlier it also catches a rewritten or removed tail."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text

from infra.migrate import alembic_config, upgrade_to_head
from ledger.domain import BookOpportunity, EarnCredits, GiftCredits, Posting, RedeemCredits
from ledger.hashing import GENESIS_HASH, entry_hash
from ledger.pg.verify import verify_ledger
from tests.ledger_helpers import NOW, LedgerDriver, new_id, scalar


def _run_verify(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "timecredits.cli", "verify", *args], env=env, capture_output=True, text=True,
        timeout=120,
    )


def _fill(engine: Engine) -> None:
    """Five entries in one batch on chain a, then one on chain b and one more on chain a."""
    LedgerDriver(engine, chain="a").apply(
        [
            EarnCredits(new_id(), NOW, "v1", "org1", 1000),
            EarnCredits(new_id(), NOW, "v2", "org1", 500),
            GiftCredits(new_id(), NOW, "v1", "v2", 100),
            BookOpportunity(new_id(), NOW, "v2", "p1", 200),
            RedeemCredits(new_id(), NOW, "v1", "p1", 300),
        ]
    )
    LedgerDriver(engine, chain="b").apply([EarnCredits(new_id(), NOW, "v3", "org1", 500)])
    LedgerDriver(engine, chain="a").apply([RedeemCredits(new_id(), NOW, "v1", "p1", 100)])


def _tamper(engine: Engine, statement: str) -> None:
    """What only a superuser with the triggers switched off could do."""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(statement))


def test_verify_passes_on_an_honest_ledger_and_prints_every_chains_head(engine: Engine, database_url: str) -> None:
    _fill(engine)
    result = _run_verify(database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 7 entries (14 postings), 3 batch links in 2 chains" in result.stdout
    assert "chain a: seq 2" in result.stdout and "chain b: seq 1" in result.stdout
    assert "ledger verified" in result.stdout


def test_verify_passes_on_an_empty_ledger(database_url: str) -> None:
    result = _run_verify(database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 0 entries" in result.stdout


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("UPDATE postings SET amount = amount * 2 WHERE entry_id = (SELECT min(id) + 2 FROM entries)", "entry"),
        ("UPDATE entries SET occurred_at = occurred_at - interval '1 day' WHERE id = (SELECT min(id) + 1 FROM entries)",
         "entry"),
        ("UPDATE entries SET volunteer_id = 'v9' WHERE id = (SELECT min(id) + 3 FROM entries)", "entry"),
        ("DELETE FROM postings WHERE entry_id = (SELECT min(id) + 3 FROM entries)", "0 postings"),
        ("DELETE FROM entries WHERE id = (SELECT min(id) + 1 FROM entries)", "an entry was removed"),
        ("UPDATE balances SET balance = balance + 1 WHERE account_key = 'volunteer:v2'", "account volunteer:v2"),
        ("UPDATE entries SET hash = sha256('x') WHERE id = (SELECT max(id) FROM entries)", "entry"),
        ("UPDATE chain_links SET link = sha256('x') WHERE chain_key = 'a' AND seq = 2", "link"),
        ("DELETE FROM entries WHERE link_id = (SELECT id FROM chain_links WHERE chain_key = 'a' AND seq = 1);"
         "DELETE FROM chain_links WHERE chain_key = 'a' AND seq = 1", "chain a: link seq 1 is missing (a batch was deleted)"),
        ("UPDATE entries SET link_id = (SELECT id FROM chain_links WHERE chain_key = 'b') "
         "WHERE id = (SELECT max(id) FROM entries)", "link"),
    ],
    ids=["amount", "timestamp", "volunteer", "posting-removed", "entry-removed", "balance", "hash", "link-forged",
         "batch-deleted", "entry-moved"],
)
def test_verify_names_the_tampered_row_and_exits_1(engine: Engine, database_url: str, statement: str, named: str) -> None:
    _fill(engine)
    _tamper(engine, statement)
    result = _run_verify(database_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MISMATCH" in result.stdout
    assert named in result.stdout


def _rewrite_tail_of_chain_a(engine: Engine) -> None:
    """The last batch of chain a removed and a different one written in its place, every hash recomputed: the
    ledger is consistent in itself, and only heads kept outside it can tell."""
    _tamper(engine, "DELETE FROM postings WHERE entry_id IN (SELECT id FROM entries WHERE link_id = "
                    "(SELECT id FROM chain_links WHERE chain_key = 'a' AND seq = 2));"
                    "UPDATE balances SET balance = balance + 100 WHERE account_key = 'volunteer:v1';"
                    "UPDATE balances SET balance = balance - 100 WHERE account_key = 'partner:p1';"
                    "DELETE FROM entries WHERE link_id = (SELECT id FROM chain_links WHERE chain_key = 'a' AND seq = 2);"
                    "DELETE FROM chain_links WHERE chain_key = 'a' AND seq = 2")
    LedgerDriver(engine, chain="a").apply([RedeemCredits(new_id(), NOW, "v1", "p1", 50)])


def test_exported_heads_catch_a_rewritten_tail(engine: Engine, database_url: str, tmp_path: Path) -> None:
    _fill(engine)
    heads = tmp_path / "heads.json"
    exported = _run_verify(database_url, "--export-heads", str(heads))
    assert exported.returncode == 0 and heads.exists(), exported.stdout + exported.stderr
    LedgerDriver(engine, chain="b").apply([EarnCredits(new_id(), NOW, "v4", "org1", 500)])
    grown = _run_verify(database_url, "--heads", str(heads))
    assert grown.returncode == 0, "a chain that grew since the export still holds the exported head"
    assert f"every head in {heads} is in the ledger" in grown.stdout

    _rewrite_tail_of_chain_a(engine)
    assert _run_verify(database_url).returncode == 0, "without the heads the rewrite is consistent in itself"
    caught = _run_verify(database_url, "--heads", str(heads))
    assert caught.returncode == 1
    assert "chain a: the link at seq 2 is not the one exported (the chain was rewritten)" in caught.stdout


def test_exported_heads_catch_a_removed_tail(engine: Engine, database_url: str, tmp_path: Path) -> None:
    _fill(engine)
    heads = tmp_path / "heads.json"
    assert _run_verify(database_url, "--export-heads", str(heads)).returncode == 0
    _tamper(engine, "DELETE FROM postings WHERE entry_id IN (SELECT id FROM entries WHERE link_id = "
                    "(SELECT id FROM chain_links WHERE chain_key = 'b'));"
                    "UPDATE balances SET balance = 0 WHERE account_key = 'volunteer:v3';"
                    "UPDATE balances SET balance = balance + 500 WHERE account_key = 'issuer:org1';"
                    "DELETE FROM entries WHERE link_id = (SELECT id FROM chain_links WHERE chain_key = 'b');"
                    "DELETE FROM chain_links WHERE chain_key = 'b'")
    caught = _run_verify(database_url, "--heads", str(heads))
    assert caught.returncode == 1, caught.stdout
    assert "chain b: exported at seq 1, but the ledger's chain ends at seq 0 (its tail was removed)" in caught.stdout


def test_a_heads_file_that_is_not_one_is_refused(database_url: str, tmp_path: Path) -> None:
    bogus = tmp_path / "heads.json"
    bogus.write_text('{"chains": {}}')
    result = _run_verify(database_url, "--heads", str(bogus))
    assert result.returncode == 2 and "not a heads file" in result.stdout


def test_checkpoints_are_written_every_so_many_links_and_catch_a_rewrite(engine: Engine) -> None:
    from ledger.pipeline import CHECKPOINT_EVERY

    driver = LedgerDriver(engine, chain="c")
    for _ in range(CHECKPOINT_EVERY):
        driver.apply([EarnCredits(new_id(), NOW, "v1", "org1", 100)])
    with engine.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM chain_checkpoints WHERE chain_key = 'c'") == 1
    report = verify_ledger(engine)
    assert report.ok and report.checkpoints_checked == 1, report.problem
    _tamper(engine, f"UPDATE chain_checkpoints SET link = sha256('x') WHERE seq = {CHECKPOINT_EVERY}")
    assert verify_ledger(engine).problem == (
        f"checkpoint of chain c at seq {CHECKPOINT_EVERY}: the chain no longer holds that link (rewritten)")


# --- a ledger written before chains per partition -------------------------------------------------------


def _legacy_ledger(database_url: str, entries: int) -> None:
    """The schema as it was before chains per partition, and entries written the way its writer wrote them:
    one chain, each entry's hash covering the one before it."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            config = alembic_config(database_url)
            config.attributes["connection"] = conn
            command.downgrade(config, "0007_balance_check_without_limit")
            conn.commit()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO accounts (key, kind, owner_id) VALUES ('issuer:org1', 'issuer', 'org1'), "
                              "('volunteer:v1', 'volunteer', 'v1')"))
            prev = GENESIS_HASH
            for _ in range(entries):
                postings = [Posting("issuer:org1", -100), Posting("volunteer:v1", 100)]
                event_id, recorded_at = new_id(), datetime.now(UTC)
                digest = entry_hash(prev_hash=prev, event_id=event_id, kind="hours_approved", occurred_at=NOW,
                                    recorded_at=recorded_at, volunteer_id="v1", org_id="org1", opportunity_id=None,
                                    related_event_id=None, postings=postings)
                entry_id = conn.execute(text("SELECT nextval('entries_id_seq')")).scalar_one()
                conn.execute(text(
                    "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, volunteer_id, org_id, "
                    "prev_hash, hash) VALUES (:id, :e, 'hours_approved', :o, :r, 'v1', 'org1', :p, :h)"),
                    {"id": entry_id, "e": event_id, "o": NOW, "r": recorded_at, "p": prev, "h": digest})
                conn.execute(text("INSERT INTO postings (entry_id, account_key, amount) VALUES "
                                  "(:id, 'issuer:org1', -100), (:id, 'volunteer:v1', 100)"), {"id": entry_id})
                prev = digest
    finally:
        engine.dispose()
    upgrade_to_head(database_url)


def test_a_ledger_written_before_chains_per_partition_stays_verifiable(database_url: str, tmp_path: Path) -> None:
    _legacy_ledger(database_url, entries=3)
    engine = create_engine(database_url)
    try:
        assert all(o.applied for o in LedgerDriver(engine, chain="tc.activity/0").apply(
            [RedeemCredits(new_id(), NOW, "v1", "p1", 50), EarnCredits(new_id(), NOW, "v2", "org1", 100)]))
        result = _run_verify(database_url, "--export-heads", str(tmp_path / "heads.json"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "checked 5 entries" in result.stdout and "legacy chain: 3 entries" in result.stdout
        assert "chain tc.activity/0: seq 1" in result.stdout

        _tamper(engine, "UPDATE postings SET amount = amount * 2 WHERE entry_id = "
                        "(SELECT min(id) + 1 FROM entries WHERE link_id IS NULL)")
        tampered = _run_verify(database_url)
        assert tampered.returncode == 1 and "stored hash does not match its contents" in tampered.stdout
    finally:
        engine.dispose()


def test_the_legacy_segment_is_part_of_the_exported_heads(database_url: str, tmp_path: Path) -> None:
    _legacy_ledger(database_url, entries=2)
    heads = tmp_path / "heads.json"
    assert _run_verify(database_url, "--export-heads", str(heads)).returncode == 0
    engine = create_engine(database_url)
    try:
        _tamper(engine, "DELETE FROM postings WHERE entry_id = (SELECT max(id) FROM entries);"
                        "DELETE FROM entries WHERE id = (SELECT max(id) FROM entries);"
                        "UPDATE balances SET balance = balance - 100 WHERE account_key = 'volunteer:v1';"
                        "UPDATE balances SET balance = balance + 100 WHERE account_key = 'issuer:org1'")
    finally:
        engine.dispose()
    assert _run_verify(database_url).returncode == 0, "the shortened legacy chain is consistent in itself"
    caught = _run_verify(database_url, "--heads", str(heads))
    assert caught.returncode == 1 and "legacy chain: exported with 2 entries" in caught.stdout
