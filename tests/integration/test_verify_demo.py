"""The demo programme, with its statistics facts, passes every check of `verify` (docs/design.md §3.3): the
checks hold for a ledger as the worker and the statistics worker write it, not only for the tests' small ones."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine

from ledger.pg.verify import verify_ledger
from tests.browser.conftest import load_demo


# On one server: the checks are the same SQL on both, and loading the demo is what this test's time goes on.
@pytest.mark.parametrize("pg_server", ["primary"], indirect=True)
def test_the_demo_ledger_passes_every_check(engine: Engine) -> None:
    load_demo(engine)
    started = time.perf_counter()
    report = verify_ledger(engine)
    print(f"verify of the demo: {report.entries_checked} entries in {time.perf_counter() - started:.2f} s")
    assert report.ok, (report.problem, [check for check in report.checks if not check.ok])
    assert all(check.note is None for check in report.checks), report.checks
    checked = {check.name: check.checked for check in report.checks}
    assert checked["statistics"] == report.entries_checked and checked["hours_rate"] and checked["bookings"], checked
