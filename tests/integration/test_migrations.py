"""The Alembic migrations (infra/migrations) against real PostgreSQL: every step down and up again, and the
functions each step installs are the ones its migration holds."""
from __future__ import annotations

import importlib

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from infra.migrate import alembic_config, upgrade_to_head

pytestmark = pytest.mark.integration


def _postings_check(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT prosrc FROM pg_proc WHERE proname = 'tc_postings_inserted'")).scalar())
    finally:
        engine.dispose()


def _migrate(database_url: str, direction: str, revision: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            config = alembic_config(database_url)
            config.attributes["connection"] = conn
            getattr(command, direction)(config, revision)
            conn.commit()
    finally:
        engine.dispose()


def test_the_balance_check_goes_down_step_by_step_and_up_again(database_url: str) -> None:
    head = importlib.import_module("infra.migrations.versions.0017_booking_lapses")
    eighth = importlib.import_module("infra.migrations.versions.0008_chain_per_partition")
    seventh = importlib.import_module("infra.migrations.versions.0007_balance_check_without_limit")
    assert _postings_check(database_url).strip() in head.POSTINGS_INSERTED
    assert "'booking_expired', 'booking_no_show'" in _postings_check(database_url)
    assert "ORDER BY account_key FOR UPDATE" in _postings_check(database_url)
    _migrate(database_url, "downgrade", "0016_activity_categories")
    assert _postings_check(database_url).strip() in eighth.POSTINGS_INSERTED
    _migrate(database_url, "downgrade", "0007_balance_check_without_limit")
    assert _postings_check(database_url).strip() in seventh.POSTINGS_INSERTED
    _migrate(database_url, "downgrade", "0006_scale_with_the_ledger")
    restored = _postings_check(database_url)
    assert "LIMIT 1" in restored and restored.strip() in seventh._function_of_0006()
    upgrade_to_head(database_url)
    assert _postings_check(database_url).strip() in head.POSTINGS_INSERTED


def test_chains_per_partition_cannot_be_downgraded_once_used(database_url: str) -> None:
    from ledger.domain import EarnCredits
    from tests.ledger_helpers import NOW, LedgerDriver, new_id

    engine = create_engine(database_url)
    try:
        LedgerDriver(engine).apply([EarnCredits(new_id(), NOW, "v1", "org1", 100)])
    finally:
        engine.dispose()
    with pytest.raises(Exception, match="cannot be downgraded"):
        _migrate(database_url, "downgrade", "0007_balance_check_without_limit")


def test_every_migration_goes_down_to_nothing_and_up_again(database_url: str) -> None:
    _migrate(database_url, "downgrade", "base")
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                                       "AND tablename <> 'alembic_version'")).scalar()
            functions = conn.execute(text("SELECT array_agg(proname) FROM pg_proc "
                                          "WHERE pronamespace = 'public'::regnamespace")).scalar()
        assert (tables, functions) == (0, None)
    finally:
        engine.dispose()
    upgrade_to_head(database_url)
    assert "LIMIT 1" not in _postings_check(database_url)


def test_memberships_are_backfilled_from_the_hours_organisations_logged(database_url: str) -> None:
    from ledger.domain import EarnCredits
    from tests.ledger_helpers import NOW, LedgerDriver, new_id

    engine = create_engine(database_url)
    try:
        driver = LedgerDriver(engine)
        driver.apply([EarnCredits(new_id(), NOW, "v1", "org1", 100), EarnCredits(new_id(), NOW, "v1", "org2", 100),
                      EarnCredits(new_id(), NOW, "v1", "org1", 50), EarnCredits(new_id(), NOW, "v2", "org2", 100)])
        _migrate(database_url, "downgrade", "0008_chain_per_partition")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass('memberships')")).scalar() is None
        upgrade_to_head(database_url)
        with engine.connect() as conn:
            spells = conn.execute(text("SELECT org_id, volunteer_id FROM memberships WHERE ended_at IS NULL "
                                       "ORDER BY org_id, volunteer_id")).all()
        assert [tuple(row) for row in spells] == [("org1", "v1"), ("org2", "v1"), ("org2", "v2")]
        # The hours flow keeps working for the members the backfill made.
        assert driver.apply([EarnCredits(new_id(), NOW, "v2", "org2", 100)])[0].applied
    finally:
        engine.dispose()


def test_tokens_made_before_lifetimes_get_a_year_from_the_migration(database_url: str) -> None:
    _migrate(database_url, "downgrade", "0008_chain_per_partition")
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO api_tokens (id, token_sha256, role) "
                              "VALUES ('00000000-0000-0000-0000-000000000009', sha256('t'::bytea), 'lead')"))
        upgrade_to_head(database_url)
        with engine.connect() as conn:
            row = conn.execute(text("SELECT expires_at - now() AS left, last_used_at FROM api_tokens")).one()
            nullable = conn.execute(text("SELECT is_nullable FROM information_schema.columns "
                                         "WHERE table_name = 'api_tokens' AND column_name = 'expires_at'")).scalar()
        assert 364 <= row.left.days <= 365 and row.last_used_at is None
        assert nullable == "NO"  # every token made from now on has an expiry
    finally:
        engine.dispose()


def test_words_in_the_append_only_tables_move_to_the_erasable_notes_and_back(database_url: str) -> None:
    """Migration 0021 (docs/design.md §5.16): the descriptions and rejection reasons already written move into
    `event_notes` and leave `hours_logs` and `hours_decisions`; free-text backgrounds, which no code can stand for,
    are cleared. Going down puts the words back."""
    _migrate(database_url, "downgrade", "0019_opportunity_series")
    engine = create_engine(database_url)
    log, rejected_log, rejection = ("00000000-0000-4000-8000-00000000000" + n for n in "123")
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO organisations (id, name, area, kinds) "
                              "VALUES ('m-club', 'Club', 'E09000030', ARRAY['community'])"))
            conn.execute(text("INSERT INTO volunteers (id, area, seb_detail, consent_stats) "
                              "VALUES ('m-ana', 'E09000030', 'my dad drove a bus', true)"))
            conn.execute(text("INSERT INTO hours_logs (event_id, volunteer_id, org_id, worked_on, minutes, activity, "
                              "logged_at, actor) VALUES (:a, 'm-ana', 'm-club', '2026-11-01', 60, 'Read to Mr Ogunleye', "
                              "now(), 'org:m-club'), (:b, 'm-ana', 'm-club', '2026-11-02', 30, '  ', now(), "
                              "'org:m-club')"), {"a": log, "b": rejected_log})
            conn.execute(text("INSERT INTO hours_decisions (log_event_id, decision_event_id, decision, reason, "
                              "decided_at, decided_by) VALUES (:b, :r, 'rejected', 'Ana was ill', now(), 'org:m-club')"),
                         {"b": rejected_log, "r": rejection})
        upgrade_to_head(database_url)
        with engine.connect() as conn:
            notes = {str(row.event_id): (row.kind, row.text) for row in conn.execute(
                text("SELECT event_id, kind, text FROM event_notes"))}
            left = conn.execute(text("SELECT (SELECT count(*) FROM hours_logs WHERE activity IS NOT NULL), "
                                     "(SELECT count(*) FROM hours_decisions WHERE reason IS NOT NULL), "
                                     "(SELECT count(*) FROM volunteers WHERE seb_detail IS NOT NULL)")).one()
        assert notes == {log: ("hours_activity", "Read to Mr Ogunleye"), rejection: ("rejection_reason", "Ana was ill")}
        assert tuple(left) == (0, 0, 0)
        with pytest.raises(Exception, match="volunteers_seb_detail_coded"), engine.begin() as conn:
            conn.execute(text("UPDATE volunteers SET seb_detail = 'bus driver'"))
        with pytest.raises(Exception, match="append_only"), engine.begin() as conn:  # append-only again
            conn.execute(text("UPDATE hours_logs SET activity = 'x'"))
        _migrate(database_url, "downgrade", "0019_opportunity_series")
        with engine.connect() as conn:
            back = conn.execute(text("SELECT activity FROM hours_logs ORDER BY worked_on")).scalars().all()
            reason = conn.execute(text("SELECT reason FROM hours_decisions")).scalar()
        assert back == ["Read to Mr Ogunleye", ""] and reason == "Ana was ill"
        upgrade_to_head(database_url)
    finally:
        engine.dispose()
