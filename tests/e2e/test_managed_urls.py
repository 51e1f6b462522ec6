"""`DATABASE_URL` as managed providers hand it out (`postgres://…`, `postgresql://…?sslmode=…`) works for
`timecredits migrate` and for the API, both its SQLAlchemy and its asyncpg reads (docs/design.md §6)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.e2e.api_stack import Api, ApiProcess, error_code
from tests.e2e.conftest import Stack
from tests.postgres import fresh_database

pytestmark = [pytest.mark.broker, pytest.mark.integration]

ADMIN_TOKEN = "tc_managed_urls_admin_" + uuid.uuid4().hex


def _as_provider_writes_it(url: str, scheme: str, sslmode: str | None) -> str:
    plain = make_url(url).set(drivername=scheme).render_as_string(hide_password=False)
    return f"{plain}?sslmode={sslmode}" if sslmode else plain


@pytest.mark.parametrize(("scheme", "sslmode"), [("postgres", None), ("postgresql", "disable"),
                                                  ("postgresql", "prefer")])
def test_migrate_and_the_api_take_a_managed_provider_url(
        scheme: str, sslmode: str | None, embedded_postgres: str, shared_stack: Stack, tmp_path: Path) -> None:
    with fresh_database(embedded_postgres, "template0") as url:
        provider_url = _as_provider_writes_it(url, scheme, sslmode)
        assert not provider_url.startswith("postgresql+")
        env = {**shared_stack.env(), "DATABASE_URL": provider_url, "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN}
        migrated = subprocess.run([sys.executable, "-m", "timecredits.cli", "migrate"], capture_output=True,
                                  text=True, env={**os.environ, **env}, timeout=300)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        assert "schema is up to date" in migrated.stdout
        process = ApiProcess(env, tmp_path / "api.log")
        try:
            process.wait_answering("/readyz", 200, timeout=60)
            api = Api(process.url, ADMIN_TOKEN)
            try:
                lead = api.token("lead")  # written through SQLAlchemy
                assert api.get("/v1/tokens", lead).status_code == 200  # resolved through asyncpg
                # an admin's balance read is the fast path's, also through asyncpg
                assert error_code(api.get("/v1/volunteers/nobody/balance", api.admin)) == (404, "unknown_volunteer")
            finally:
                api.close()
        finally:
            process.stop()
