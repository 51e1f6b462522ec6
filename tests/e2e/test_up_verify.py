"""`timecredits up` runs verify on its timer (docs/design.md §3.3) and the API's `/metrics`, where Prometheus
scrapes, exports the last result: 1 on an honest ledger, 0 once a superuser has forged a row, 1 again once it is
gone, and `up` says what was found."""
from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.conftest import free_port
from tests.e2e.test_up import START_TIMEOUT_S
from tests.e2e.test_up_mail import _stop
from tests.e2e.up_helpers import fresh_clone_env, running_up

pytestmark = [pytest.mark.broker, pytest.mark.integration]

WAIT_S = 60  # each wait ends as soon as the metric changes; with a 1 s interval that is a few seconds


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    return {match[1]: float(match[2]) for match in re.finditer(r"^(timecredits_verify\S*) (\S+)$", body, re.M)}


def _until(port: int, wanted: dict[str, float], after: float = 0.0) -> dict[str, float]:
    """The verify metrics once they show `wanted` from a run that ended after `after` (epoch seconds)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = _metrics(port)
        if (all(found.get(name) == value for name, value in wanted.items())
                and found.get("timecredits_verify_last_run_timestamp_seconds", 0.0) > after):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"verify metrics never showed {wanted} after {after}: {found}")
        time.sleep(0.5)


def test_up_runs_verify_on_its_timer_and_the_api_exports_the_result(tmp_path: Path) -> None:
    port = free_port()
    env = {**fresh_clone_env(), "TIMECREDITS_VERIFY_INTERVAL": "1"}
    with running_up(tmp_path / "data", port, env=env) as running:
        database_url = running.read_until(re.compile(r"^PostgreSQL: (\S+)$"), START_TIMEOUT_S)[1]
        running.read_until(re.compile(r"running; press Ctrl-C to stop"), START_TIMEOUT_S)
        first = _until(port, {"timecredits_verify_ok": 1.0,
                              'timecredits_verify_check_ok{check="hash_chain"}': 1.0,
                              'timecredits_verify_check_ok{check="statistics"}': 1.0})
        assert first["timecredits_verify_duration_seconds"] >= 0
        # The timer runs it again: a later run's end replaces the first's.
        _until(port, {"timecredits_verify_ok": 1.0}, after=first["timecredits_verify_last_run_timestamp_seconds"])

        engine = create_engine(database_url)
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL session_replication_role = replica"))
                conn.execute(text("INSERT INTO stats_facts (entry_id, kind, occurred_on, volunteer_id, amount, "
                                  "minutes, sign) VALUES (424242, 'credits_redeemed', '2026-11-02', 'v1', 300, 0, 1)"))
            tampered_at = time.time()
            broken = _until(port, {"timecredits_verify_ok": 0.0}, after=tampered_at)
            assert broken['timecredits_verify_check_ok{check="statistics"}'] == 0.0
            assert broken['timecredits_verify_check_ok{check="hash_chain"}'] == 1.0
            running.read_until(re.compile(r"verify: MISMATCH statistics: statistics fact of entry 424242 "
                                          r"\(credits_redeemed, 3\.00 credits, volunteer v1\): the ledger has no "
                                          r"such entry"), WAIT_S)

            with engine.begin() as conn:
                conn.execute(text("SET LOCAL session_replication_role = replica"))
                conn.execute(text("DELETE FROM stats_facts WHERE entry_id = 424242"))
            _until(port, {"timecredits_verify_ok": 1.0}, after=time.time())
            running.read_until(re.compile(r"^verify: ledger verified"), WAIT_S)
        finally:
            engine.dispose()
        assert _stop(running).splitlines()[-1].strip() == "stopped"
