"""The runtime database role: what the API and workers may do in PostgreSQL, and nothing more (docs/design.md §6.1).

Migrations run as the schema's owner. The API, the ledger worker, the statistics worker and the `tokens`
commands connect as a runtime role that may SELECT and INSERT the ledger but never UPDATE, DELETE or TRUNCATE
it, and, not owning any table, can neither ALTER a table nor disable its triggers. `ensure_runtime_role` creates
the role (when the owner may create roles), grants `RUNTIME_GRANTS` and revokes anything else; it runs after
every migration and changes nothing when run again.
"""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from stats.rollup_sql import PARTITIONED, PARTITIONS

__all__ = [
    "DEFAULT_RUNTIME_ROLE",
    "LEDGER_TABLES",
    "RUNTIME_GRANTS",
    "RUNTIME_SEQUENCES",
    "RuntimeRoleError",
    "ensure_runtime_role",
    "grant_runtime_privileges",
    "may_create_roles",
    "prepare_runtime_role",
    "runtime_password",
    "runtime_url",
]

DEFAULT_RUNTIME_ROLE = "timecredits_app"
#: Where a generated runtime password is kept, beside the embedded server's own state (infra/embedded.py).
PASSWORD_FILE = "postgres.app-password"

_APPEND_ONLY = frozenset({"SELECT", "INSERT"})

#: Table -> privileges of the runtime role. `UPDATE (a, b)` is a column grant: only those columns may change.
#: Each entry is what the code does to the table (docs/design.md §6.1 says who and why); nothing else is granted.
RUNTIME_GRANTS: dict[str, frozenset[str]] = {
    # The ledger and its chains: append-only (docs/design.md §3.1 invariant 2, §3.3).
    "entries": _APPEND_ONLY,
    "postings": _APPEND_ONLY,
    "accounts": _APPEND_ONLY,  # INSERT ... ON CONFLICT DO NOTHING needs no UPDATE
    "rejections": _APPEND_ONLY,
    "hours_logs": _APPEND_ONLY,
    "hours_decisions": _APPEND_ONLY,
    "chain_links": _APPEND_ONLY,
    "chain_checkpoints": _APPEND_ONLY,
    # Moved by tc_postings_inserted and opened by tc_open_balance, both SECURITY DEFINER (migration 0012).
    "balances": frozenset({"SELECT"}),
    # The registry: the API inserts, the ledger worker upserts what an event carries (docs/design.md §4.2).
    "organisations": frozenset({"SELECT", "INSERT", "UPDATE (name, area, kinds, auto_approve, updated_at)"}),
    # An erasure clears the free-text answer and notes when (docs/design.md §5.15).
    "volunteers": frozenset({"SELECT", "INSERT", "UPDATE (area, age_band, seb, seb_detail, first_time_volunteer, "
                                                 "consent_stats, consent_changed_at, updated_at, erased_at)"}),
    "opportunities": frozenset({"SELECT", "INSERT", "UPDATE (partner_id, title, category, cost, capacity, area, "
                                                    "starts_at, series_id, updated_at)"}),
    # Personal data (docs/design.md §3.4): written at sign-up; the API never reads it back, a coordinator's pages
    # read their own members' names (§8.3); deleted by an erasure (§5.15).
    "volunteer_profiles": frozenset({"SELECT", "INSERT", "DELETE"}),
    # docs/design.md §5.4: a spell is ended once; a request is renewed or withdrawn; a reference changed or erased.
    "memberships": frozenset({"SELECT", "INSERT", "UPDATE (ended_at, updated_at)"}),
    "membership_requests": frozenset({"SELECT", "INSERT", "UPDATE (requested_at)", "DELETE"}),
    "volunteer_references": frozenset({"SELECT", "INSERT", "DELETE"}),
    # docs/design.md §5.1: a token is revoked and its last use noted; an erasure also blanks its label (§5.15);
    # no row is deleted.
    "api_tokens": frozenset({"SELECT", "INSERT", "UPDATE (revoked_at, last_used_at, label)"}),
    # A key is claimed (or a dead process's claim taken over), settled with a final answer, or dropped after any
    # other (api/middleware.py).
    "idempotency_keys": frozenset({"SELECT", "INSERT", "UPDATE (body_sha256, status_code, response, created_at)",
                                   "DELETE"}),
    "event_requests": _APPEND_ONLY,
    "stats_facts": _APPEND_ONLY,  # one fact an entry, INSERT ... ON CONFLICT DO NOTHING (docs/design.md §5.2)
    # Written only by the SECURITY DEFINER trigger on stats_facts (migrations 0022, 0023; docs/design.md §5.3).
    "stats_cells": frozenset({"SELECT"}),
    "stats_volunteer_months": frozenset({"SELECT"}),
    # Their partitions: read through the tables above, nothing on their own.
    **{f"{table}_{n}": frozenset() for table in PARTITIONED for n in range(PARTITIONS)},
    "stats_first_hours": frozenset({"SELECT"}),
    # Loaded by an operator as the owner (`import-areas`); the API reads them for cold spots.
    "areas": frozenset({"SELECT"}),
    # A worker's start checks that the schema is at the newest revision.
    "alembic_version": frozenset({"SELECT"}),
    # Spend codes (docs/design.md §5.6): made by the API; each use written once by the ledger worker. A code never
    # used is deleted by an erasure or, once expired, by the retention sweep (§5.15).
    "spend_codes": frozenset({"SELECT", "INSERT", "DELETE"}),
    "spend_code_uses": _APPEND_ONLY,
    "spend_code_failures": frozenset({"SELECT", "INSERT", "DELETE"}),
    # The web app (docs/design.md §8.1): a person is disabled or renamed, a link or card used once, a card
    # voided, a session seen, revoked or swept; old sign-in requests are deleted.
    "people": frozenset({"SELECT", "INSERT", "UPDATE (email, display_name, disabled_at)"}),
    "sign_in_links": frozenset({"SELECT", "INSERT", "UPDATE (used_at)", "DELETE"}),
    "sign_in_cards": frozenset({"SELECT", "INSERT", "UPDATE (voided_at, used_at)", "DELETE"}),
    "web_sessions": frozenset({"SELECT", "INSERT", "UPDATE (last_seen_at, revoked_at)", "DELETE"}),
    "sign_in_requests": frozenset({"SELECT", "INSERT", "DELETE"}),
    # docs/design.md §5.7: a row each time consent changes, dates and ids only; an erasure keeps it (§5.15).
    "consent_changes": frozenset({"SELECT", "INSERT"}),
    # docs/design.md §5.8: the API adds and removes waiting volunteers, the offer job makes and lapses offers, the
    # ledger worker removes a volunteer who booked.
    "waitlist": frozenset({"SELECT", "INSERT", "UPDATE (offered_at, offered_until)", "DELETE"}),
    # docs/design.md §5.14: a correction's reason is written with its event and deleted only by an erasure; the
    # audit log only grows.
    "corrections": frozenset({"SELECT", "INSERT", "DELETE"}),
    "audit_log": _APPEND_ONLY,
    # docs/design.md §5.16: an hours log's description or a rejection's reason, written with its event (again, to
    # no effect, when a request is retried) and deleted only by an erasure; never changed.
    "event_notes": frozenset({"SELECT", "INSERT", "DELETE"}),
}

#: Sequences a batch draws its ids from (ledger/pg/processing.py): USAGE allows nextval, nothing else.
RUNTIME_SEQUENCES: frozenset[str] = frozenset({"entries_id_seq", "chain_links_id_seq"})

#: The append-only tables the runtime role may never UPDATE, DELETE, TRUNCATE, ALTER or disable a trigger of.
LEDGER_TABLES: tuple[str, ...] = ("entries", "postings", "accounts", "rejections", "hours_logs", "hours_decisions",
                                  "chain_links", "chain_checkpoints", "balances", "spend_code_uses",
                                  "audit_log")

_PRIVILEGE = re.compile(r"^(SELECT|INSERT|DELETE)$|^UPDATE \(([a-z_][a-z0-9_]*(?:, [a-z_][a-z0-9_]*)*)\)$")
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: The migrations' advisory lock (infra/migrate.py): grants and migrations of one database never interleave.
_LOCK_KEY = 7465636865627


class RuntimeRoleError(RuntimeError):
    """The runtime role cannot be set up as asked; the message says what to provide instead."""


@dataclass(frozen=True)
class _Role:
    exists: bool
    superuser: bool = False
    unsafe: tuple[str, ...] = ()


def _check_grants() -> None:
    for table, privileges in RUNTIME_GRANTS.items():
        for privilege in privileges:
            if not _PRIVILEGE.match(privilege):
                raise ValueError(f"RUNTIME_GRANTS[{table!r}]: {privilege!r} is not a privilege this module grants")


_check_grants()


def _identifier(name: str) -> str:
    """A role name as written in SQL; the names are checked rather than quoted, so they read the same in psql."""
    if not _ROLE_NAME.match(name):
        raise RuntimeRoleError(f"the runtime role's name must be lower-case letters, digits and _ (got {name!r})")
    return name


def may_create_roles(conn: Connection) -> bool:
    """Whether the connected role is a superuser or has CREATEROLE."""
    return bool(conn.execute(text(
        "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")).scalar())


def _role(conn: Connection, name: str) -> _Role:
    row = conn.execute(text(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication, "
        # A superuser counts as a member of every role; it is named as a superuser instead.
        "       NOT rolsuper AND pg_has_role(rolname, current_user, 'MEMBER') AS owner_member, "
        "       rolname = current_user AS is_owner "
        "FROM pg_roles WHERE rolname = :name"), {"name": name}).first()
    if row is None:
        return _Role(exists=False)
    flags = {"SUPERUSER": row.rolsuper, "CREATEROLE": row.rolcreaterole, "CREATEDB": row.rolcreatedb,
             "BYPASSRLS": row.rolbypassrls, "REPLICATION": row.rolreplication,
             "a member of the owner": row.owner_member, "the owner itself": row.is_owner}
    return _Role(exists=True, superuser=row.rolsuper, unsafe=tuple(k for k, v in flags.items() if v))


def _quote_literal(conn: Connection, value: str) -> str:
    return str(conn.execute(text("SELECT quote_literal(:v)"), {"v": value}).scalar())


def _create_or_alter(conn: Connection, name: str, password: str | None, role: _Role) -> None:
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION"
    if password is not None:
        attributes += f" PASSWORD {_quote_literal(conn, password)}"
    if role.exists:
        # Never demoted here: an existing superuser, the owner or its member is someone's, not ours to change.
        if role.superuser or "the owner itself" in role.unsafe or "a member of the owner" in role.unsafe:
            raise RuntimeRoleError(f"role {name} is {', '.join(role.unsafe)}: the runtime role must be a role of "
                                   "its own, with no power over the ledger (name another in DATABASE_APP_URL)")
        if role.unsafe or password is not None:
            conn.execute(text(f"ALTER ROLE {name} {attributes}"))
        return
    # Another `migrate` or `up` (on another database of the same cluster) may create it meanwhile.
    try:
        with conn.begin_nested():
            conn.execute(text(f"CREATE ROLE {name} {attributes}"))
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) not in ("42710", "23505"):  # duplicate_object, unique_violation
            raise
        conn.execute(text(f"ALTER ROLE {name} {attributes}"))


def _existing(conn: Connection, kind: str, names: list[str]) -> list[str]:
    return list(conn.execute(text(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
        "AND c.relkind = ANY (:kinds) AND c.relname = ANY (:names) ORDER BY c.relname"),
        {"kinds": ["r", "p"] if kind == "table" else ["S"], "names": names}).scalars())


def grant_runtime_privileges(conn: Connection, name: str) -> None:
    """Revoke everything the role holds in this schema, then grant `RUNTIME_GRANTS` on the tables that exist.

    In the caller's transaction: other sessions see the old grants or the new ones, never none.
    """
    schema = conn.execute(text("SELECT quote_ident(current_schema())")).scalar()
    database = conn.execute(text("SELECT quote_ident(current_database())")).scalar()
    conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {name}"))
    conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {name}"))
    conn.execute(text(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {schema} FROM {name}"))
    conn.execute(text(f"REVOKE ALL ON SCHEMA {schema} FROM {name}"))
    conn.execute(text(f"REVOKE ALL ON DATABASE {database} FROM {name}"))
    conn.execute(text(f"GRANT CONNECT ON DATABASE {database} TO {name}"))
    conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {name}"))
    for table in _existing(conn, "table", sorted(RUNTIME_GRANTS)):
        privileges = ", ".join(sorted(RUNTIME_GRANTS[table]))
        if not privileges:
            continue
        conn.execute(text(f"GRANT {privileges} ON TABLE {schema}.{table} TO {name}"))
    for sequence in _existing(conn, "sequence", sorted(RUNTIME_SEQUENCES)):
        conn.execute(text(f"GRANT USAGE ON SEQUENCE {schema}.{sequence} TO {name}"))


def ensure_runtime_role(owner_engine: Engine, role_name: str = DEFAULT_RUNTIME_ROLE,
                        password: str | None = None) -> None:
    """Make `role_name` the runtime role of the owner's database: created if missing and the owner may create
    roles (LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS; the password set when given), then granted
    `RUNTIME_GRANTS` and nothing else. Idempotent; run it after every migration.

    An owner that may not create roles can still grant on its own tables: the role must then exist already, and
    must not be a superuser, nor able to create roles or databases, bypass row security, or act as the owner.
    """
    name = _identifier(role_name)
    with owner_engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        role = _role(conn, name)
        if may_create_roles(conn):
            _create_or_alter(conn, name, password, role)
        elif not role.exists:
            raise RuntimeRoleError(
                f"the runtime role {name} does not exist and DATABASE_URL's role may not create roles: create it "
                "(CREATE ROLE ... LOGIN NOSUPERUSER) and name it in DATABASE_APP_URL, or migrate as a role with "
                "CREATEROLE (docs/operations.md, \"The runtime database role\")")
        elif role.unsafe:
            raise RuntimeRoleError(f"the runtime role {name} must not be {', '.join(role.unsafe)}: the API and "
                                   "workers would hold the owner's powers over the ledger")
        grant_runtime_privileges(conn, name)


def runtime_password(data_dir: Path) -> str:
    """The generated runtime password kept in the data directory (made once, mode 0600)."""
    path = data_dir / PASSWORD_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x", opener=lambda p, flags: os.open(p, flags, 0o600)) as out:
                out.write(secrets.token_urlsafe(24) + "\n")
        except FileExistsError:
            pass  # another command on the same data directory made it first: use theirs
    return path.read_text().strip()


def runtime_url(owner_url: str, role_name: str, password: str | None) -> str:
    """The owner's URL with the runtime role (and its password) in place of the owner's."""
    url = make_url(owner_url).set(username=role_name, password=password)
    return url.render_as_string(hide_password=False)


def prepare_runtime_role(owner_url: str, app_url: str | None, data_dir: Path) -> str:
    """After a migration as `owner_url`'s role: set up the runtime role and answer its URL (docs/design.md §6.1).

    `app_url` (DATABASE_APP_URL) names the role, and its password when the owner may set one; unset, the role is
    `timecredits_app` with a password kept in `data_dir`, which needs an owner that may create roles.
    """
    engine = create_engine(owner_url)
    try:
        with engine.connect() as conn:
            creator = may_create_roles(conn)
        if app_url:
            url = make_url(app_url)
            if not url.username:
                raise RuntimeRoleError("DATABASE_APP_URL names no role (postgresql://ROLE:PASSWORD@host/db)")
            ensure_runtime_role(engine, url.username, url.password if creator else None)
            return app_url
        if not creator:
            raise RuntimeRoleError(
                "DATABASE_URL's role may not create roles (it is no superuser and has no CREATEROLE): create a "
                "runtime role and set DATABASE_APP_URL to its URL, or migrate as a role that may create roles "
                "(docs/operations.md, \"The runtime database role\")")
        password = runtime_password(data_dir)
        ensure_runtime_role(engine, DEFAULT_RUNTIME_ROLE, password)
        return runtime_url(owner_url, DEFAULT_RUNTIME_ROLE, password)
    finally:
        engine.dispose()
