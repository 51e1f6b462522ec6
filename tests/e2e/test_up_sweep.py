"""`timecredits up` runs the retention sweep on its timer (docs/design.md §5.15), as it runs the waiting lists'
offer job and the hold-release job: an idempotency key older than its setting is deleted while `up` runs, and
`up` says so."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.conftest import free_port
from tests.e2e.test_up import START_TIMEOUT_S
from tests.e2e.test_up_mail import _stop
from tests.e2e.up_helpers import fresh_clone_env, running_up

pytestmark = [pytest.mark.broker, pytest.mark.integration]


def test_up_sweeps_what_is_older_than_its_setting_on_its_timer(tmp_path: Path) -> None:
    env = {**fresh_clone_env(), "TIMECREDITS_SWEEP_INTERVAL": "1", "TIMECREDITS_KEEP_IDEMPOTENCY_KEYS_DAYS": "7"}
    with running_up(tmp_path / "data", free_port(), env=env) as running:
        database_url = running.read_until(re.compile(r"^PostgreSQL: (\S+)$"), START_TIMEOUT_S)[1]
        running.read_until(re.compile(r"running; press Ctrl-C to stop"), START_TIMEOUT_S)
        engine = create_engine(database_url)
        try:
            with engine.begin() as conn:
                for key, age in (("old", 8), ("new", 6)):
                    conn.execute(text("INSERT INTO idempotency_keys (caller, path, key, body_sha256, created_at) "
                                      "VALUES ('\\x00', '/v1/hours', :k, '\\x00', :at)"),
                                 {"k": key, "at": datetime.now(UTC) - timedelta(days=age)})
            running.read_until(re.compile(r"^retention: deleted 1 idempotency keys$"), 60)
            with engine.connect() as conn:
                assert conn.execute(text("SELECT key FROM idempotency_keys")).scalars().all() == ["new"]
        finally:
            engine.dispose()
        assert _stop(running).splitlines()[-1].strip() == "stopped"
