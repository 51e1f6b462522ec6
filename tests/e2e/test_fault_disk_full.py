"""The fault matrix: PostgreSQL out of disk under load (docs/operations.md, "The fault matrix").

The tables live on a small filesystem of the server's own (tests/e2e/faults.py `SmallDiskPostgres`), filled to its
last page while events keep arriving: PostgreSQL refuses to extend a table with SQLSTATE 53100, the worker waits
and reports it (docs/operations.md, "When a record or the database fails"), the API answers `503 database_full`.
The space given back, both carry on by themselves: nothing lost, nothing doubled, the ledger verified.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from ledger.pg.processing import EventProcessor
from tests.e2e.api_stack import Api, ApiProcess, error_code
from tests.e2e.conftest import stack_on
from tests.conftest import service_missing
from tests.e2e.faults import (
    Background,
    assert_ledger_verified,
    counter,
    own_small_disk_postgres,
    report_recovery,
    small_disk_refused,
    wait_for_exit_or,
)
from tests.e2e.stack import decided_count, ledger_summary, wait_until
from tests.e2e.test_faults import AREA, _backlog, _event_ids, _produce, _reference, _registry

pytestmark = [pytest.mark.broker, pytest.mark.integration]

ADMIN = "tc_disk_full_admin_" + uuid.uuid4().hex
BLOCKED = "timecredits_database_blocked"
#: Registrations tried while the disk is full before one must have been refused: a few may still fit in the free
#: room of pages already allocated.
REGISTRATIONS = 200


@pytest.fixture()
def small_disks() -> None:
    """A small filesystem can be made here without root."""
    refused = small_disk_refused()
    if refused is not None:
        service_missing(f"no small filesystem for PostgreSQL (unprivileged user namespaces): {refused}")


def _registration(api: Api, n: int, key: str) -> httpx.Response:
    return api.post("/v1/volunteers", ADMIN, {"reference": f"df-{n}", "org_id": "club", "display_name": "x",
                                              "area": AREA, "consent_stats": True}, headers={"Idempotency-Key": key})


def _blocked_by_the_full_disk(metrics_text: str) -> bool:
    """The ledger's `timecredits_database_blocked` gauge is 1 with the reason `disk_full`."""
    return any(line.startswith(BLOCKED + "{") and 'consumer="ledger"' in line and 'reason="disk_full"' in line
               and float(line.rsplit(" ", 1)[1]) == 1 for line in metrics_text.splitlines())


def _members(engine: Engine) -> list[str]:
    """The club's references of the volunteers registered here, one a volunteer."""
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT r.reference FROM volunteer_references r JOIN volunteers v "
                                      "ON v.id = r.volunteer_id WHERE r.org_id = 'club' AND r.reference LIKE 'df-%' "
                                      "ORDER BY r.reference")).scalars())


def test_a_full_disk_makes_the_worker_wait_and_the_api_answer_503_and_both_resume_when_space_is_freed(
    small_disks: None, kafka_bootstrap: str, embedded_postgres: str, primary_template: str, tmp_path: Path
) -> None:
    records = _backlog(2_000, seed=41)
    ids = _event_ids(records)
    with own_small_disk_postgres(tmp_path, "24m") as server, \
            stack_on(server.url, kafka_bootstrap, tmp_path) as stack:
        EventProcessor(stack.engine).process(_registry())
        worker = stack.start_worker(metrics=True)
        process = ApiProcess({**stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN}, tmp_path / "api.log")
        api = Api(process.url, ADMIN, timeout=30)
        try:
            _produce(stack, records[:500])
            wait_for_exit_or(lambda: decided_count(stack.engine, ids) >= 500, worker, 180, "the first events applied")
            process.wait_answering("/readyz", 200, timeout=60)
            assert _registration(api, 0, str(uuid.uuid4())).status_code == 201
            registered = ["df-0"]

            filled = server.fill()
            producing = Background(_produce, stack, records[500:], 400.0)
            try:
                wait_for_exit_or(lambda: _blocked_by_the_full_disk(worker.metrics_text()), worker, 120,
                                 "the ledger to report the full disk")
                refused: tuple[int, str] | None = None
                for n in range(1, REGISTRATIONS + 1):
                    key = str(uuid.uuid4())
                    answer = _registration(api, n, key)
                    if answer.status_code == 503:
                        assert error_code(answer) == (503, "database_full"), answer.text
                        assert answer.headers["retry-after"] == "5"
                        refused = (n, key)
                        break
                    assert answer.status_code == 201, answer.text  # it fitted in room already allocated
                    registered.append(f"df-{n}")
                assert refused is not None, f"{REGISTRATIONS} registrations fitted on a full disk"
                assert _members(stack.engine) == sorted(registered), "a refused registration left a volunteer"
            finally:
                producing.join()
            waiting_at = decided_count(stack.engine, ids)
            assert waiting_at < len(ids), "the disk was full while events were still to be applied"
            assert worker.alive, worker.log_tail()

            server.free()
            freed = time.monotonic()
            n, key = refused
            again = wait_until(lambda: (r := _registration(api, n, key)).status_code != 503 and r, 60,
                               "the refused registration, retried with its key, to be answered")
            first_answer = time.monotonic() - freed
            assert again.status_code == 201, again.text
            registered.append(f"df-{n}")
            assert _registration(api, n, key).headers.get("idempotent-replayed") == "true"
            wait_for_exit_or(lambda: decided_count(stack.engine, ids) == len(ids), worker, 180,
                             "the worker to resume and finish the backlog")
            drained = time.monotonic() - freed
            wait_until(lambda: counter(worker.metrics_text(), BLOCKED) == 0, 30, "the gauge to clear")
        finally:
            api.close()
            process.stop(timeout=10)
        print(f"\nfilled the last {filled / 2**20:.1f} MiB of the small disk; {waiting_at} of {len(ids)} events "
              f"decided when it was freed; {len(registered) - 2} registration(s) fitted before the 503")
        report_recovery("PostgreSQL out of disk: first good API answer after the space was freed", first_answer)
        report_recovery("PostgreSQL out of disk: backlog applied after the space was freed", drained)
        time.sleep(2)  # a duplicate applied late would show up now

        assert worker.alive, worker.log_tail()
        log = worker.log_tail(2_000)
        assert [line for line in log.splitlines() if "ledger: database refuses writes (disk_full)" in line], log
        assert "takes writes again" in log, log
        assert "Traceback" not in log, log
        assert _members(stack.engine) == sorted(registered), "a registration lost or doubled"
        assert ledger_summary(stack.engine) == _reference(embedded_postgres, primary_template, records)
        assert_ledger_verified(stack.engine)
