"""Outages and abuse under load: PostgreSQL restarted under a running worker, the broker frozen under a
running API and worker (a worker killed again and again: test_fault_kills.py; a flood of malformed records:
test_fault_flood.py).

No timed assertions: each test asserts what happened (nothing lost, nothing doubled, the right answers), then
that `timecredits verify` passes and, where the events are known in advance, that the ledger equals the one a
clean pass over the same events makes (`_reference`).
"""
from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from ledger.pg.processing import EventProcessor
from tests.e2e.api_stack import Api, ApiProcess, error_code
from tests.e2e.conftest import Stack
from tests.e2e.conftest import stack_on
from tests.e2e.faults import (
    Background,
    counter,
    own_broker,
    own_postgres,
    report_recovery,
    wait_for_exit_or,
)
from tests.e2e.stack import decided_count, ledger_summary
from tests.e2e.test_faults import VOLUNTEERS, _backlog, _event_ids, _produce, _reference, _registry, _verify_cli
from tests.postgres import fresh_database

pytestmark = [pytest.mark.broker, pytest.mark.integration]

DATABASE_RETRIES = "timecredits_database_retries_total"


def _assert_verified(database_url: str) -> None:
    verified = _verify_cli(database_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


# --- 1. PostgreSQL restarted while the worker runs ----------------------------------------------------------------


def test_postgres_restarted_under_a_running_worker_loses_and_doubles_nothing(
    kafka_bootstrap: str, embedded_postgres: str, primary_template: str, tmp_path: Path
) -> None:
    """The worker's own PostgreSQL is shut down (fast: open transactions rolled back, connections cut) while events
    keep arriving, and started again on the same port: the same worker process waits, retries and carries on."""
    records = _backlog(4_000, seed=21)
    ids = _event_ids(records)
    with own_postgres(tmp_path) as server, stack_on(server.url, kafka_bootstrap, tmp_path) as stack:
        EventProcessor(stack.engine).process(_registry())
        worker = stack.start_worker(metrics=True)
        _produce(stack, records[:200])
        wait_for_exit_or(lambda: decided_count(stack.engine, ids) >= 200, worker, 180, "the worker to be consuming")
        producing = Background(_produce, stack, records[200:], 400.0)
        try:
            wait_for_exit_or(lambda: decided_count(stack.engine, ids) >= 600, worker, 180,
                             "the worker to be applying the events coming in")
            retries_before = counter(worker.metrics_text(), DATABASE_RETRIES)
            assert decided_count(stack.engine, ids) < len(ids)
            stack.engine.dispose()
            server.shut_down()
            assert producing.running, "PostgreSQL went away while events were still being produced"
            wait_for_exit_or(lambda: counter(worker.metrics_text(), DATABASE_RETRIES) >= retries_before + 3, worker,
                             60, "several failed attempts while PostgreSQL is down")
            assert worker.alive, worker.log_tail()
            server.start_again()
            restarted = time.monotonic()
        finally:
            producing.join()
        wait_for_exit_or(lambda: decided_count(stack.engine, ids) == len(ids), worker, 300,
                         "the worker to finish the backlog after the restart")
        report_recovery("PostgreSQL restarted: backlog applied after it was back", time.monotonic() - restarted)
        time.sleep(2)  # a duplicate applied late would show up now

        assert worker.alive, "the worker that saw the outage is the one that finished"
        assert counter(worker.metrics_text(), DATABASE_RETRIES) > retries_before, worker.log_tail()
        assert ledger_summary(stack.engine) == _reference(embedded_postgres, primary_template, records)
        _assert_verified(stack.database_url)


def test_the_api_answers_503_with_a_code_while_postgres_is_down_and_says_so_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Every request during the outage gets an answer, `503` with a code (never a 500, never a dropped
    connection), whichever way it reaches the database: the token and balance fast reads (asyncpg), a route
    (SQLAlchemy), the Idempotency-Key middleware; and the log says so in a line, not a traceback a request."""
    admin = "tc_pg_outage_" + uuid.uuid4().hex
    with own_postgres(tmp_path) as server, stack_on(server.url, kafka_bootstrap, tmp_path) as stack:
        EventProcessor(stack.engine).process(_registry())
        api = ApiProcess({**stack.env(), "TIMECREDITS_ADMIN_TOKEN": admin}, tmp_path / "api.log")
        try:
            api.wait_answering("/readyz", 200, timeout=60)
            client = Api(api.url, admin, timeout=30)
            volunteer = VOLUNTEERS[0]
            assert client.get(f"/v1/volunteers/{volunteer}/balance", admin).status_code == 200
            stack.engine.dispose()
            server.shut_down()
            hours = {"volunteer_id": volunteer, "org_id": "club", "date": (datetime.now(UTC).date()
                     - timedelta(days=1)).isoformat(), "minutes": 30, "activity": "Food bank"}
            for _ in range(40):
                answers = [
                    client.get(f"/v1/volunteers/{volunteer}/balance", admin),
                    client.get("/v1/stats/participation?group_by=area", admin),
                    client.post("/v1/hours", admin, hours, headers={"Idempotency-Key": str(uuid.uuid4())}),
                    client.post("/v1/hours", admin, hours),
                ]
                for answer in answers:
                    assert answer.status_code == 503, (answer.request.url, answer.text)
                    assert error_code(answer) == (503, "database_unavailable"), answer.text
                    assert answer.headers["retry-after"] == "5"
            assert httpx.get(api.url + "/readyz", timeout=10).status_code == 503
            server.start_again()
            restarted = time.monotonic()
            api.wait_answering("/readyz", 200, timeout=60)
            assert client.get(f"/v1/volunteers/{volunteer}/balance", admin).status_code == 200
            report_recovery("PostgreSQL restarted: first good API answer after it was back",
                            time.monotonic() - restarted)
            client.close()
        finally:
            api.stop()
        log = (tmp_path / "api.log").read_text()
        assert "Traceback" not in log, log[-4000:]
        said = [line for line in log.splitlines() if "database_unavailable:" in line]
        assert 1 <= len(said) <= 3, said  # once when it began (and once a minute after, were it longer)


# --- 2. the broker unreachable for a while -------------------------------------------------------------------------

ADMIN_TOKEN = "tc_outage_admin_" + uuid.uuid4().hex
AREA = "E09000025"
YESTERDAY = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
PUBLISH_TIMEOUT_S = 3.0
#: The client waits a little longer than the API's publish timeout: the 503 must come before it gives up.
CLIENT_TIMEOUT_S = PUBLISH_TIMEOUT_S + 4


def _past_the_outage(send: Any, what: str, timeout: float = 120) -> httpx.Response:
    """Repeat a write (with its Idempotency-Key) while it answers 503 broker_unavailable; the first other answer."""
    deadline = time.monotonic() + timeout
    while True:
        response = send()
        if response.status_code != 503:
            return response
        assert error_code(response) == (503, "broker_unavailable"), response.text
        assert time.monotonic() < deadline, f"{what}: still 503 {timeout} s after the broker came back"
        time.sleep(0.5)


def test_a_frozen_broker_gives_503_to_writes_while_reads_go_on_and_loses_nothing(
    embedded_postgres: str, primary_template: str, tmp_path: Path
) -> None:
    """The broker stops answering (SIGSTOP: connections hang rather than fail) under a running API and worker:
    writes answer 503 broker_unavailable, promptly, and reads carry on; once it answers again (SIGCONT), writes
    are accepted, the refused ones retried with their Idempotency-Key take effect once, and every event accepted
    before and after the outage is applied."""
    with own_broker(tmp_path) as broker, fresh_database(embedded_postgres, primary_template) as url, \
            stack_on(url, broker.bootstrap_servers, tmp_path) as stack:
        worker = stack.start_worker()
        process = ApiProcess({**stack.env(), "TIMECREDITS_ADMIN_TOKEN": ADMIN_TOKEN,
                              "TIMECREDITS_PUBLISH_TIMEOUT": str(PUBLISH_TIMEOUT_S)}, tmp_path / "api.log")
        api = Api(process.url, ADMIN_TOKEN, timeout=CLIENT_TIMEOUT_S)
        try:
            process.wait_answering("/readyz", 200, timeout=60)
            api.organisation("auto", ["community"], AREA, auto_approve=True)
            api.organisation("lido", ["partner"], AREA)
            club = api.token("org", org_id="auto")
            volunteers = [api.volunteer(f"fz-{n}", AREA, member_of=("auto",)) for n in range(5)]
            earned: Counter[str] = Counter()
            accepted: list[str] = []

            def log_hours(volunteer: str, minutes: int, key: str | None = None) -> httpx.Response:
                body = {"volunteer_id": volunteer, "org_id": "auto", "date": YESTERDAY, "minutes": minutes,
                        "activity": "Food bank"}
                return api.post("/v1/hours", club, body, headers={"Idempotency-Key": key} if key else None)

            own = {volunteer: api.token("volunteer", volunteer_id=volunteer) for volunteer in volunteers}

            def redeem(volunteer: str, amount: int, key: str | None = None) -> httpx.Response:
                """Spent by the volunteer's own act (docs/design.md §5.6)."""
                body = {"partner_id": "lido", "amount": f"{amount // 100}.{amount % 100:02d}"}
                return api.post("/v1/redemptions", own[volunteer], body,
                                headers={"Idempotency-Key": key} if key else None)

            def register(volunteer: str, key: str) -> httpx.Response:
                return api.post("/v1/volunteers", ADMIN_TOKEN, {"reference": volunteer, "org_id": "auto",
                                                                "display_name": "x", "area": AREA,
                                                                "consent_stats": True}, headers={"Idempotency-Key": key})

            def late_member() -> list[str]:
                """The volunteer registered as `fz-late`, by the organisation's reference: none or one."""
                members = api.get("/v1/organisations/auto/members", ADMIN_TOKEN).json()
                return [m["volunteer_id"] for m in members if m["reference"] == "fz-late"]

            accepted.append(api.applied(api.accepted(log_hours(volunteers[0], 60)))["event_id"])
            earned[volunteers[0]] += 100  # the worker is consuming: what follows may be in flight at the freeze
            for n in range(40):
                volunteer, minutes = volunteers[n % len(volunteers)], 30 * (1 + n % 4)
                accepted.append(api.accepted(log_hours(volunteer, minutes)))
                earned[volunteer] += minutes * 100 // 60
                if n % 4 == 3:
                    accepted.append(api.accepted(redeem(volunteer, 25)))
                    earned[volunteer] -= 25

            keys = {name: str(uuid.uuid4()) for name in ("hours", "redemption", "volunteer")}
            retries = {
                "hours": lambda: log_hours(volunteers[1], 60, keys["hours"]),
                "redemption": lambda: redeem(volunteers[2], 50, keys["redemption"]),
                "volunteer": lambda: register("fz-late", keys["volunteer"]),
            }
            broker.freeze()
            try:
                for name, send in retries.items():
                    try:
                        response = send()
                    except httpx.TimeoutException as exc:
                        raise AssertionError(f"{name}: no answer within {CLIENT_TIMEOUT_S} s, "
                                             f"the publish timeout being {PUBLISH_TIMEOUT_S} s") from exc
                    assert error_code(response) == (503, "broker_unavailable"), name
                for volunteer in volunteers:  # reads come from PostgreSQL
                    assert api.get(f"/v1/volunteers/{volunteer}/balance", club).status_code == 200
                assert api.get(f"/v1/events/{accepted[-1]}", ADMIN_TOKEN).json()["status"] in ("pending", "applied")
                assert late_member() == []
                assert api.get("/healthz", None).status_code == 200
            finally:
                broker.thaw()
            thawed = time.monotonic()

            accepted.append(api.accepted(_past_the_outage(retries["hours"], "the refused hours, retried")))
            report_recovery("broker frozen: first write accepted after it answered again", time.monotonic() - thawed)
            earned[volunteers[1]] += 100
            accepted.append(api.accepted(_past_the_outage(retries["redemption"], "the refused redemption, retried")))
            earned[volunteers[2]] -= 50
            registered = _past_the_outage(retries["volunteer"], "the refused registration, retried")
            assert registered.status_code == 201, registered.text
            for n in range(10):
                volunteer = volunteers[n % len(volunteers)]
                accepted.append(api.accepted(log_hours(volunteer, 60)))
                earned[volunteer] += 100

            for event_id in accepted:
                api.applied(event_id)
            report_recovery("broker frozen: every accepted event applied after it answered again",
                            time.monotonic() - thawed)
            time.sleep(2)  # an event refused with 503 that reached the broker all the same would show up now
            for volunteer in volunteers:
                balance = api.balance(volunteer)["balance"]
                assert balance == f"{earned[volunteer] // 100}.{earned[volunteer] % 100:02d}", (volunteer, balance)
            assert [api.balance(v)["balance"] for v in late_member()] == ["0.00"]
            with stack.engine.connect() as conn:
                entries = {str(e) for e in conn.execute(text("SELECT event_id FROM entries")).scalars()}
            assert entries == set(accepted), "an event the API refused was applied, or an accepted one is missing"
            assert worker.alive, worker.log_tail()
        finally:
            api.close()
            process.stop(timeout=10)
        _assert_verified(stack.database_url)
