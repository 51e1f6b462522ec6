"""Bring a database to the newest schema with Alembic (used by the CLI, workers, `timecredits up` and tests)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: Several workers may start at once; one migrates, the others wait and then find nothing to do.
_MIGRATION_LOCK_KEY = 7465636865627
_INSUFFICIENT_PRIVILEGE = "42501"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


class MigrationNotPermitted(RuntimeError):
    """The schema is behind this release and the connected role may not migrate it (the runtime role, §6.1)."""


def upgrade_to_head(database_url: str) -> None:
    """Migrate to the newest revision; at it already, nothing is written, so the runtime role (which may only read
    `alembic_version`, docs/design.md §6.1) passes, and is refused with `MigrationNotPermitted` otherwise."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                config = alembic_config(database_url)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            except DBAPIError as exc:
                if getattr(exc.orig, "pgcode", None) != _INSUFFICIENT_PRIVILEGE:
                    raise
                conn.rollback()
                raise MigrationNotPermitted(
                    f"the schema is not at the newest revision and {engine.url.username} may not migrate it: run "
                    "`timecredits migrate` as the schema's owner first (docs/operations.md, \"Upgrades and "
                    "migrations\")") from exc
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()
