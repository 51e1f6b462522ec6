"""The runtime role on real PostgreSQL (docs/design.md §6.1): it cannot UPDATE, DELETE, TRUNCATE, ALTER or disable a
trigger on any ledger table, is no superuser, holds exactly the grants table, and does the normal work: a batch
through the worker's pipeline, the statistics, token revocation and the API's registry writes."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from infra.migrate import upgrade_to_head
from infra.roles import (
    LEDGER_TABLES,
    RUNTIME_GRANTS,
    RUNTIME_SEQUENCES,
    RuntimeRoleError,
    ensure_runtime_role,
    prepare_runtime_role,
    runtime_url,
)
from ledger.domain import AttendBooking, BookOpportunity, CancelBooking, EarnCredits, GiftCredits, RedeemCredits, ReverseEntry
from ledger.events import MembershipEnded, OrganisationRegistered
from tests.ledger_helpers import NOW, LedgerDriver, as_event, balance, new_id
from tests.postgres import database_url as url_of_database

pytestmark = pytest.mark.integration

PASSWORD = "runtime-role-test-password"
INSUFFICIENT_PRIVILEGE = "42501"


@dataclass(frozen=True)
class Runtime:
    name: str
    url: str
    engine: Engine


def _drop_role(owner: Engine, name: str) -> None:
    with owner.begin() as conn:  # its privileges in this database first: a role is the cluster's
        conn.execute(text(f"DROP OWNED BY {name}"))
        conn.execute(text(f"DROP ROLE {name}"))


@pytest.fixture()
def runtime(engine: Engine, database_url: str) -> Iterator[Runtime]:
    """A runtime role of this test's own (roles are shared by every database of a server), granted as `migrate`
    grants it, and an engine connected as it."""
    name = f"tc_rt_{uuid.uuid4().hex[:12]}"
    ensure_runtime_role(engine, name, PASSWORD)
    url = runtime_url(database_url, name, PASSWORD)
    app = create_engine(url)
    try:
        yield Runtime(name, url, app)
    finally:
        app.dispose()
        _drop_role(engine, name)


def _refused(runtime: Runtime, sql: str) -> str:
    """The SQLSTATE PostgreSQL answers `sql` with, as the runtime role; fails the test if it is allowed."""
    try:
        with runtime.engine.begin() as conn:
            conn.execute(text(sql))
    except DBAPIError as exc:
        return str(getattr(exc.orig, "pgcode", ""))
    pytest.fail(f"the runtime role was allowed: {sql}")


def _a_column(engine: Engine, table: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
                                     "AND attnum > 0 AND NOT attisdropped ORDER BY attnum LIMIT 1"), {"t": table}).scalar())


def _a_trigger(engine: Engine, table: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT tgname FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass) "
                                     "AND NOT tgisinternal ORDER BY tgname LIMIT 1"), {"t": table}).scalar())


REFUSED = {
    "update": lambda e, t: f"UPDATE {t} SET {_a_column(e, t)} = {_a_column(e, t)}",
    "delete": lambda e, t: f"DELETE FROM {t}",
    "truncate": lambda e, t: f"TRUNCATE {t}",
    "alter": lambda e, t: f"ALTER TABLE {t} ADD COLUMN tampered integer",
    "disable_trigger": lambda e, t: f"ALTER TABLE {t} DISABLE TRIGGER {_a_trigger(e, t)}",
}


@pytest.mark.parametrize("operation", sorted(REFUSED))
@pytest.mark.parametrize("table", LEDGER_TABLES)
def test_the_runtime_role_cannot_change_a_ledger_table(engine: Engine, runtime: Runtime, table: str,
                                                       operation: str) -> None:
    _a_row_in_every_ledger_table(engine)
    sql = REFUSED[operation](engine, table)
    assert _refused(runtime, sql) == INSUFFICIENT_PRIVILEGE, sql


def _a_row_in_every_ledger_table(engine: Engine) -> None:
    """Rows to change, so that a refusal is the privilege's and not an empty table's: an approved log, its entry
    and link, a rejection, and a checkpoint (taken by hand, as an operator may)."""
    outcomes = LedgerDriver(engine).apply([EarnCredits(new_id(), NOW, "rt-ana", "rt-garden", 100),
                                           GiftCredits(new_id(), NOW, "rt-ana", "rt-ben", 10_000)])
    assert [o.status for o in outcomes] == ["applied", "rejected"], outcomes
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO chain_checkpoints (chain_key, seq, link) "
                          "SELECT chain_key, seq, link FROM chain_links ORDER BY id LIMIT 1"))
        conn.execute(text("INSERT INTO spend_codes VALUES (gen_random_uuid(), 'rt-ana', 'rt-garden', 100, '\\x01', "
                          "now(), now() + interval '10 minutes')"))
        conn.execute(text("INSERT INTO spend_code_uses SELECT id, gen_random_uuid(), now() FROM spend_codes"))
        conn.execute(text("INSERT INTO audit_log (actor, action, subject) "
                          "VALUES ('admin:rt', 'token_revoked', 'token:rt')"))
        empty = [t for t in LEDGER_TABLES if not conn.execute(text(f"SELECT EXISTS (SELECT FROM {t})")).scalar()]
    assert not empty, empty


def test_the_runtime_role_is_no_superuser_and_owns_nothing(engine: Engine, runtime: Runtime) -> None:
    with engine.connect() as conn:
        role = conn.execute(text("SELECT * FROM pg_roles WHERE rolname = :n"), {"n": runtime.name}).one()
        owned = conn.execute(text("SELECT count(*) FROM pg_class WHERE relowner = CAST(:n AS regrole)"),
                             {"n": runtime.name}).scalar()
    assert role.rolcanlogin
    assert not (role.rolsuper or role.rolcreaterole or role.rolcreatedb or role.rolbypassrls or role.rolreplication)
    assert owned == 0
    with runtime.engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == runtime.name
    assert _refused(runtime, "CREATE TABLE planted (id integer)") == INSUFFICIENT_PRIVILEGE


def _privileges(engine: Engine, role: str) -> dict[str, frozenset[str]]:
    """What `role` holds on every table of the schema, in RUNTIME_GRANTS' notation."""
    found: dict[str, frozenset[str]] = {}
    with engine.connect() as conn:
        tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).scalars()
        for table in tables:
            held = {p for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
                    if conn.execute(text("SELECT has_table_privilege(:r, CAST(:t AS regclass), :p)"),
                                    {"r": role, "t": table, "p": p}).scalar()}
            if "UPDATE" not in held:
                columns = conn.execute(text(
                    "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 "
                    "AND NOT attisdropped AND has_column_privilege(:r, attrelid, attnum, 'UPDATE') ORDER BY attnum"),
                    {"r": role, "t": table}).scalars().all()
                if columns:
                    held.add(f"UPDATE ({', '.join(columns)})")
            found[table] = frozenset(held)
    return found


def _canonical(grants: frozenset[str], engine: Engine, table: str) -> frozenset[str]:
    """Column grants in the table's column order, as `_privileges` reads them back."""
    out = set()
    with engine.connect() as conn:
        order = list(conn.execute(text("SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
                                       "AND attnum > 0 ORDER BY attnum"), {"t": table}).scalars())
    for grant in grants:
        if grant.startswith("UPDATE ("):
            columns = grant.removeprefix("UPDATE (").removesuffix(")").split(", ")
            grant = f"UPDATE ({', '.join(sorted(columns, key=order.index))})"
        out.add(grant)
    return frozenset(out)


def test_the_runtime_role_holds_exactly_the_grants_table(engine: Engine, runtime: Runtime) -> None:
    held = _privileges(engine, runtime.name)
    unlisted = set(held) - set(RUNTIME_GRANTS)
    assert not unlisted, f"tables with no entry in infra/roles.py:RUNTIME_GRANTS: {sorted(unlisted)}"
    for table, privileges in held.items():
        assert privileges == _canonical(RUNTIME_GRANTS[table], engine, table), table
    with engine.connect() as conn:
        for sequence in RUNTIME_SEQUENCES:
            assert conn.execute(text("SELECT has_sequence_privilege(:r, :s, 'USAGE') "
                                     "AND NOT has_sequence_privilege(:r, :s, 'UPDATE')"),
                                {"r": runtime.name, "s": sequence}).scalar(), sequence


def test_granting_again_changes_nothing_and_takes_back_what_is_not_in_the_table(engine: Engine,
                                                                                runtime: Runtime) -> None:
    before = _privileges(engine, runtime.name)
    with engine.begin() as conn:
        conn.execute(text(f"GRANT UPDATE, DELETE, TRUNCATE ON entries, balances TO {runtime.name}"))
        conn.execute(text(f"GRANT ALL ON areas TO {runtime.name}"))
        conn.execute(text(f"GRANT CREATE ON SCHEMA public TO {runtime.name}"))
    ensure_runtime_role(engine, runtime.name, PASSWORD)
    ensure_runtime_role(engine, runtime.name, PASSWORD)
    assert _privileges(engine, runtime.name) == before
    assert _refused(runtime, "UPDATE entries SET kind = kind") == INSUFFICIENT_PRIVILEGE
    assert _refused(runtime, "CREATE TABLE planted (id integer)") == INSUFFICIENT_PRIVILEGE


def test_a_table_of_the_grants_table_not_made_yet_is_granted_once_it_exists(engine: Engine, runtime: Runtime) -> None:
    with engine.begin() as conn:  # as before the migration that makes it
        conn.execute(text("DROP TABLE spend_code_failures"))
    ensure_runtime_role(engine, runtime.name, PASSWORD)
    assert "spend_code_failures" not in _privileges(engine, runtime.name)  # skipped, not an error
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE spend_code_failures (code text, failed_at timestamptz)"))
    ensure_runtime_role(engine, runtime.name, PASSWORD)
    assert _privileges(engine, runtime.name)["spend_code_failures"] == {"SELECT", "INSERT", "DELETE"}


def test_the_runtime_role_runs_every_kind_of_batch(engine: Engine, runtime: Runtime) -> None:
    driver = LedgerDriver(runtime.engine)
    earned, booked, other, redeemed = new_id(), new_id(), new_id(), new_id()
    outcomes = driver.apply([
        EarnCredits(earned, NOW, "rt-ana", "rt-garden", 500),
        BookOpportunity(booked, NOW, "rt-ana", "rt-lido", 150),
        BookOpportunity(other, NOW, "rt-ana", "rt-lido", 100),
        RedeemCredits(redeemed, NOW, "rt-ana", "rt-lido", 50),
        GiftCredits(new_id(), NOW, "rt-ana", "rt-ben", 25),
    ])
    assert all(o.applied for o in outcomes), outcomes
    outcomes = driver.apply([CancelBooking(new_id(), NOW, booked), AttendBooking(new_id(), NOW, other),
                             ReverseEntry(new_id(), NOW, redeemed)])
    assert all(o.applied for o in outcomes), outcomes
    refused = driver.apply([GiftCredits(new_id(), NOW, "rt-ben", "rt-ana", 10_000)])[0]
    assert (refused.status, refused.reason) == ("rejected", "insufficient_credits")  # a rejection row, written

    # A registry event again (an upsert that updates) and a membership's end.
    renamed = driver.processor.process([as_event(OrganisationRegistered(
        org_id="rt-garden", name="Renamed", area=LedgerDriver.AREA, kinds=frozenset({"community"}),
        auto_approve=True))])
    assert renamed.outcomes[0].applied
    with engine.connect() as conn:
        membership = conn.execute(text("SELECT id FROM memberships WHERE volunteer_id = 'rt-ana'")).scalar_one()
    ended = driver.processor.process([as_event(MembershipEnded(membership_id=membership, org_id="rt-garden",
                                                               volunteer_id="rt-ana"))])
    assert ended.outcomes[0].applied

    assert balance(engine, "volunteer:rt-ana") == 500 - 150 - 100 - 50 - 25 + 150 + 50
    assert balance(engine, "partner:rt-lido") == 100
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM organisations WHERE id = 'rt-garden'")).scalar() == "Renamed"
        assert conn.execute(text("SELECT ended_at IS NOT NULL FROM memberships WHERE id = :m"),
                            {"m": membership}).scalar()
    from ledger.pg.verify import verify_ledger

    assert verify_ledger(runtime.engine).ok


def test_the_runtime_role_records_the_statistics(runtime: Runtime) -> None:
    from ledger.events import EntryCommitted
    from stats.facts import write_facts

    driver = LedgerDriver(runtime.engine)
    driver.apply([EarnCredits(new_id(), NOW, "rt-cal", "rt-garden", 100)])  # registers both first
    batch = driver.processor.process([driver.event(EarnCredits(new_id(), NOW, "rt-cal", "rt-garden", 200))])
    entries = [EntryCommitted.model_validate_json(entry.to_json()) for entry in batch.committed]
    assert len(entries) == 1
    assert write_facts(runtime.engine, entries) == 1
    assert write_facts(runtime.engine, entries) == 0  # delivered again: counted once


def test_the_runtime_role_revokes_tokens_and_notes_their_use_but_changes_nothing_else(engine: Engine,
                                                                                     runtime: Runtime) -> None:
    from api.auth import Principal, Role, create_token, principal_for
    from api.routes.tokens import revoke_token

    token, token_id = create_token(runtime.engine, Role.LEAD, label="runtime")
    assert principal_for(runtime.engine, token, None) == Principal(Role.LEAD, None, None, str(token_id))
    assert revoke_token(runtime.engine, Principal(Role.ADMIN), token_id)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT revoked_at, last_used_at FROM api_tokens WHERE id = :i"), {"i": token_id}).one()
    assert row.revoked_at is not None and row.last_used_at is not None
    assert _refused(runtime, "UPDATE api_tokens SET role = 'admin'") == INSUFFICIENT_PRIVILEGE
    assert _refused(runtime, "UPDATE api_tokens SET expires_at = now() + interval '100 years'") == INSUFFICIENT_PRIVILEGE
    assert _refused(runtime, "DELETE FROM api_tokens") == INSUFFICIENT_PRIVILEGE


def test_words_about_events_are_erasable_but_the_runtime_role_only_writes_reads_and_erases_them(
        engine: Engine, runtime: Runtime) -> None:
    """`event_notes` holds what people typed (docs/design.md §5.16): not append-only, so an erasure can delete a
    note; the runtime role may write, read and delete one, never change its words or the table."""
    log_id, other_id = uuid.uuid4(), uuid.uuid4()
    with runtime.engine.begin() as conn:
        conn.execute(text("INSERT INTO event_notes (event_id, kind, text) VALUES (:a, 'hours_activity', 'Gardening'), "
                          "(:b, 'rejection_reason', 'Ann was ill')"), {"a": log_id, "b": other_id})
        assert conn.execute(text("SELECT text FROM event_notes WHERE event_id = :a"), {"a": log_id}).scalar() == \
            "Gardening"
    assert _refused(runtime, "UPDATE event_notes SET text = 'changed'") == INSUFFICIENT_PRIVILEGE
    assert _refused(runtime, "TRUNCATE event_notes") == INSUFFICIENT_PRIVILEGE
    assert _refused(runtime, "ALTER TABLE event_notes ADD COLUMN tampered integer") == INSUFFICIENT_PRIVILEGE
    with runtime.engine.begin() as conn:  # an erasure
        assert conn.execute(text("DELETE FROM event_notes WHERE event_id = :a"), {"a": log_id}).rowcount == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT event_id FROM event_notes")).scalars().all() == [other_id]
        triggers = conn.execute(text("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'event_notes'::regclass "
                                     "AND NOT tgisinternal")).scalar()
    assert triggers == 0  # erasable: no append-only trigger


def test_the_words_columns_of_the_append_only_tables_are_empty_and_stay_append_only(engine: Engine,
                                                                                   runtime: Runtime) -> None:
    """Since migration 0021 the worker writes no words into `hours_logs` and `hours_decisions`; the tables stay
    append-only for everyone but a migration (docs/design.md §5.16)."""
    _a_row_in_every_ledger_table(engine)
    with engine.connect() as conn:
        nullable = dict(conn.execute(text(
            "SELECT table_name, is_nullable FROM information_schema.columns WHERE (table_name, column_name) IN "
            "(('hours_logs', 'activity'), ('hours_decisions', 'reason'))")).all())
    assert nullable == {"hours_logs": "YES", "hours_decisions": "YES"}
    assert _refused(runtime, "UPDATE hours_logs SET activity = NULL") == INSUFFICIENT_PRIVILEGE
    with pytest.raises(DBAPIError, match="append_only"), engine.begin() as conn:  # even the owner
        conn.execute(text("UPDATE hours_logs SET activity = NULL"))


@pytest.mark.broker
def test_the_api_does_its_registry_writes_as_the_runtime_role(engine: Engine, runtime: Runtime,
                                                              kafka_bootstrap: str) -> None:
    """Organisations, volunteers and their personal data, memberships, requests, references, tokens and
    idempotency keys, through the API's own routes and middleware, connected as the runtime role."""
    from api.app import create_app
    from api.broker import BrokerLink
    from api.deps import Services
    from api.reads import FastReads
    from producers.kafka import ALL_TOPICS, ensure_topics, prefixed

    prefix = f"rt{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, 1, prefixed(ALL_TOPICS, prefix))
    admin = "tc_" + "runtime-role-admin-token".ljust(43, "x")

    async def calls() -> list[tuple[str, int, str]]:
        reads = FastReads(runtime.url, size=2)
        await reads.start()
        link = BrokerLink(kafka_bootstrap, topic_prefix=prefix)
        try:
            app = create_app(Services(engine=runtime.engine, producer=link, admin_token=admin, reads=reads))
            app.state.services = Services(engine=runtime.engine, producer=link, admin_token=admin, reads=reads)
            transport = httpx.ASGITransport(app=app)
            seen: list[tuple[str, int, str]] = []
            async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                         headers={"Authorization": f"Bearer {admin}"}) as client:
                async def call(method: str, path: str, body: object = None,
                               headers: dict[str, str] | None = None) -> httpx.Response:
                    response = await client.request(method, path, json=body, headers=headers)
                    seen.append((f"{method} {path}", response.status_code, response.text))
                    return response

                sign_up = {"area": "E09000030", "consent_stats": True, "display_name": "Ana",
                           "email": "ana@example.org", "org_id": "rt-garden", "reference": "A-1"}
                await call("POST", "/v1/organisations", {"id": "rt-garden", "name": "Garden", "area": "E09000030",
                                                         "kinds": ["community"]})
                made = await call("POST", "/v1/volunteers", sign_up, {"Idempotency-Key": "sign-up-ana"})
                volunteer = made.json().get("id", "")
                await call("POST", "/v1/volunteers", sign_up, {"Idempotency-Key": "sign-up-ana"})  # the first answer
                await call("PUT", f"/v1/organisations/rt-garden/members/{volunteer}/reference", {"reference": "A-2"})
                org_token = (await call("POST", "/v1/tokens", {"role": "org", "org_id": "rt-garden"})).json()
                other = (await call("POST", "/v1/volunteers", {"area": "E09000030", "consent_stats": True,
                                                               "display_name": "Ben"})).json()
                await call("POST", "/v1/organisations/rt-garden/members", {"volunteer_id": other.get("id")},
                           {"Authorization": f"Bearer {org_token.get('token')}"})  # a request, pending
                await call("DELETE", f"/v1/organisations/rt-garden/members/{other.get('id')}")  # withdrawn
                await call("DELETE", f"/v1/organisations/rt-garden/members/{volunteer}")  # ended
                await call("DELETE", f"/v1/tokens/{org_token.get('id')}")
            return seen
        finally:
            await reads.close()
            link.close()

    seen = asyncio.run(calls())
    assert [status for _, status, _ in seen] == [201, 201, 201, 200, 201, 201, 202, 200, 200, 204], seen
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM volunteer_profiles")).scalar() == 2
        assert conn.execute(text("SELECT reference FROM volunteer_references")).scalar() == "A-2"
        assert conn.execute(text("SELECT count(*) FROM memberships WHERE ended_at IS NOT NULL")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM membership_requests")).scalar() == 0
        assert conn.execute(text("SELECT status_code FROM idempotency_keys")).scalar() == 201


# --- who creates the role: migrate and up (infra.roles.prepare_runtime_role) ------------------------------------


@dataclass(frozen=True)
class OwnedDatabase:
    owner_url: str  # as its owner, who may not create roles
    superuser_url: str  # the same database as the server's superuser


@pytest.fixture()
def owned_database(pg_server: str) -> Iterator[OwnedDatabase]:
    """A database owned by a role that may not create roles, migrated as that role: a managed PostgreSQL's."""
    suffix = uuid.uuid4().hex[:12]
    owner, database = f"tc_owner_{suffix}", f"tc_owned_{suffix}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE ROLE {owner} LOGIN NOCREATEROLE NOSUPERUSER PASSWORD 'owner'"))
            conn.execute(text(f'CREATE DATABASE "{database}" OWNER {owner}'))
        superuser_url = url_of_database(pg_server, database)
        owner_url = runtime_url(superuser_url, owner, "owner")
        upgrade_to_head(owner_url)
        yield OwnedDatabase(owner_url, superuser_url)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f"DROP ROLE IF EXISTS {owner}"))
        admin.dispose()


def test_an_owner_that_may_not_create_roles_needs_an_existing_role_named_in_the_app_url(
        owned_database: OwnedDatabase, tmp_path: Path) -> None:
    owner_url = owned_database.owner_url
    with pytest.raises(RuntimeRoleError, match="DATABASE_APP_URL"):
        prepare_runtime_role(owner_url, None, tmp_path)
    name = f"tc_rt_{uuid.uuid4().hex[:12]}"
    app_url = runtime_url(owner_url, name, PASSWORD)
    with pytest.raises(RuntimeRoleError, match="does not exist"):
        prepare_runtime_role(owner_url, app_url, tmp_path)
    superuser = create_engine(owned_database.superuser_url, isolation_level="AUTOCOMMIT")
    owner, app = create_engine(owner_url), create_engine(app_url)
    try:
        with superuser.connect() as conn:
            conn.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'"))
        assert prepare_runtime_role(owner_url, app_url, tmp_path) == app_url
        granted = _privileges(owner, name)
        assert granted["entries"] == {"SELECT", "INSERT"} and granted["balances"] == {"SELECT"}
        assert LedgerDriver(app).apply([EarnCredits(new_id(), NOW, "rt-dee", "rt-garden", 100)])[0].applied
        # A role with powers over the ledger is refused as the runtime role, not granted.
        with superuser.connect() as conn:
            conn.execute(text(f"ALTER ROLE {name} BYPASSRLS"))
        with pytest.raises(RuntimeRoleError, match="BYPASSRLS"):
            prepare_runtime_role(owner_url, app_url, tmp_path)
    finally:
        owner.dispose()
        app.dispose()
        with superuser.connect() as conn:  # its privileges live in this database only
            conn.execute(text(f"DROP OWNED BY {name}"))
            conn.execute(text(f"DROP ROLE IF EXISTS {name}"))
        superuser.dispose()


def test_an_owner_that_may_create_roles_makes_the_default_role_with_a_kept_password(
        engine: Engine, database_url: str, tmp_path: Path) -> None:
    first = prepare_runtime_role(database_url, None, tmp_path)
    again = prepare_runtime_role(database_url, None, tmp_path)
    assert first == again  # the password kept in the data directory is used again
    assert (tmp_path / "postgres.app-password").stat().st_mode & 0o777 == 0o600
    assert make_url(first).username == "timecredits_app"
    app = create_engine(first)
    try:
        with app.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == "timecredits_app"
        assert LedgerDriver(app).apply([EarnCredits(new_id(), NOW, "rt-eve", "rt-garden", 100)])[0].applied
    finally:
        app.dispose()


def _timecredits(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_APP_URL")}
    return subprocess.run([sys.executable, "-m", "timecredits.cli", *args], env={**clean, "COLUMNS": "300", **env},
                          capture_output=True, text=True, timeout=120)


def test_migrate_grants_the_runtime_role_or_says_what_to_set(owned_database: OwnedDatabase, database_url: str,
                                                               tmp_path: Path) -> None:
    granted = _timecredits("migrate", env={"DATABASE_URL": database_url, "TIMECREDITS_DATA_DIR": str(tmp_path)})
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert "runtime role timecredits_app granted" in granted.stdout
    refused = _timecredits("migrate", env={"DATABASE_URL": owned_database.owner_url,
                                           "TIMECREDITS_DATA_DIR": str(tmp_path)})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "may not create roles" in refused.stdout and "DATABASE_APP_URL" in refused.stdout


def test_the_runtime_role_finds_the_schema_current_and_is_refused_a_migration(engine: Engine, runtime: Runtime,
                                                                              database_url: str) -> None:
    from alembic import command

    from infra.migrate import MigrationNotPermitted, alembic_config

    upgrade_to_head(runtime.url)  # at the newest revision: nothing to write, so nothing refused
    with engine.connect() as conn:
        config = alembic_config(database_url)
        config.attributes["connection"] = conn
        command.downgrade(config, "-1")
        conn.commit()
    with pytest.raises(MigrationNotPermitted, match="timecredits migrate"):
        upgrade_to_head(runtime.url)
    upgrade_to_head(database_url)


def test_an_owner_that_may_create_roles_never_takes_itself_or_a_superuser_as_the_runtime_role(
        engine: Engine, database_url: str, tmp_path: Path) -> None:
    owner = str(make_url(database_url).username)
    with pytest.raises(RuntimeRoleError, match="the owner itself"):
        prepare_runtime_role(database_url, database_url, tmp_path)
    name = f"tc_su_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN SUPERUSER"))
    try:
        with pytest.raises(RuntimeRoleError, match="SUPERUSER"):
            ensure_runtime_role(engine, name, PASSWORD)
        with engine.connect() as conn:  # left as it was, not demoted
            assert conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :n"), {"n": name}).scalar()
            assert conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :n"), {"n": owner}).scalar()
    finally:
        _drop_role(engine, name)
