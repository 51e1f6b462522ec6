"""`timecredits up` keeps what it accepted: a worker killed with SIGKILL mid-import is restarted, nothing is lost.

One `up` (embedded PostgreSQL and broker, no demo). An organisation and 100 volunteers are registered through
the API; then `timecredits import-hours --approve` produces a 5,000-row sheet (10,000 events) to up's broker.
While the ledger is applying it, the ledger worker is killed with SIGKILL, and once it is back the statistics
worker too, while API writes keep being answered 202. Then: both were restarted (a console line, new pids), the
broker is the same process throughout, every accepted event is applied exactly once (5,000 hours logs, 5,000
approvals, one entry each, every API event decided and none pending), `timecredits verify` is clean, there is
one statistics fact an entry, and a SIGINT drains (both consumer groups at lag 0) and leaves no process.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import httpx
import psutil
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import create_engine, text

from consumers.worker import ledger_group, statistics_group
from infra.embedded import EmbeddedPostgres
from ledger.events import TOPIC_ACTIVITY, TOPIC_ADMIN, TOPIC_LEDGER
from producers.cli import EXIT_NOT_CHECKED
from producers.kafka import ensure_topics
from tests.e2e.api_stack import Api
from tests.e2e.conftest import free_port
from tests.e2e.up_helpers import (
    STOP_TIMEOUT_S,
    UpProcess,
    accepts,
    alive,
    describe,
    fresh_clone_env,
    markers_alive,
    process_tree,
    running_up,
    wait_all_gone,
)
from timecredits.drain import group_lag

pytestmark = [pytest.mark.broker, pytest.mark.integration, pytest.mark.fault]

ROWS = 5_000
LATE_ROWS = 1_000  # produced while the ledger is paused, just before the SIGINT: what the drain must apply
VOLUNTEERS = 100
ORG = "org-supervised"
AUTO_ORG = "org-supervised-auto"  # approves automatically: an API write is one event, one entry
AREA = "E09000030"
START_TIMEOUT_S = 120
APPLY_TIMEOUT_S = 150


def _sheet(path: Path, rows: int, activity: str = "Shift") -> None:
    """`rows` good rows over VOLUNTEERS volunteers and the last 89 days, no two alike: within the programme's 92
    days back, and a volunteer's day far from the 24 hours a day allows (docs/design.md §5.6)."""
    today = date.today()
    lines = ["Volunteer,Date,Hours,Activity"]
    for n in range(rows):
        day = today - timedelta(days=1 + n % 89)
        lines.append(f"vs{n % VOLUNTEERS:03d},{day:%d/%m/%Y},{30 + n % 90}m,{activity} {n}")
    path.write_text("\n".join(lines) + "\n")


def _members(api: Api, orgs: tuple[str, ...]) -> list[str]:
    """VOLUNTEERS volunteers, members of `orgs`, each organisation's reference for the nth being `vsNNN` (the
    sheets' volunteer column); their ids, in that order."""
    return [api.volunteer(f"vs{n:03d}", AREA, member_of=orgs, reference=f"vs{n:03d}") for n in range(VOLUNTEERS)]


def _import(sheet: Path, data_dir: Path) -> subprocess.Popen[str]:
    """`timecredits import-hours SHEET --org ORG --approve --wait 0` with no service configured: it finds up's broker
    and database on the data dir by itself. It does not wait for the worker (which these tests kill or pause), so
    it exits 4, "not checked"."""
    return subprocess.Popen(
        [sys.executable, "-m", "timecredits.cli", "import-hours", str(sheet), "--org", ORG, "--approve", "--wait", "0",
         "--data-dir", str(data_dir)],
        env=fresh_clone_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _child(up_pid: int, args: str) -> psutil.Process:
    """The live child of `up` running `timecredits <args>`."""
    for proc in psutil.Process(up_pid).children():
        try:
            if args in " ".join(proc.cmdline()) and alive(proc):
                return proc
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no live child of up runs {args!r}")


def _until(what: str, check: Callable[[], bool], timeout: float, running: UpProcess) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}\n{running.output()}")
        if running.process.poll() is not None:
            raise AssertionError(f"`up` exited ({running.process.returncode}) while waiting for {what}\n"
                                 f"{running.output()}")
        time.sleep(0.25)


class ApiWriter(threading.Thread):
    """POST /v1/hours in a loop until stopped; keeps the event id of every 202."""

    def __init__(self, api: Api, volunteers: list[str]) -> None:
        """`volunteers`: the ids it logs hours for, set before it starts."""
        super().__init__(daemon=True)
        self.api = api
        self.volunteers = volunteers
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            body = {"volunteer_id": self.volunteers[n % VOLUNTEERS], "org_id": AUTO_ORG,
                    "date": str(date.today() - timedelta(days=1)), "minutes": 15 + n % 30, "activity": f"API {n}"}
            try:
                response = self.api.post("/v1/hours", self.api.admin, body)
            except httpx.HTTPError as exc:
                self.refused.append(repr(exc))
            else:
                if response.status_code == 202:
                    self.accepted.append(response.json()["event_id"])
                else:
                    self.refused.append(f"{response.status_code} {response.text[:200]}")
            n += 1
            time.sleep(0.05)


def test_group_lag_counts_every_record_the_group_has_not_committed(kafka_bootstrap: str) -> None:
    """Also the records of a partition's last batch: Tansu reports the end of a partition as one past the first
    record of its last batch, which would make a group that stopped inside that batch look drained."""
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"lag-group-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, 2, [topic])
    assert group_lag(kafka_bootstrap, group, [topic]) == 0
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=50)
    try:
        for batch in (100, 7):  # two record batches a partition
            for n in range(batch):
                producer.send(topic, value=b"x", partition=n % 2)
            producer.flush()
    finally:
        producer.close()
    assert group_lag(kafka_bootstrap, group, [topic]) == 107  # nothing committed: everything counts
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    try:
        first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
        consumer.assign([first, second])
        consumer.commit({first: OffsetAndMetadata(51, "", -1), second: OffsetAndMetadata(20, "", -1)})
        assert group_lag(kafka_bootstrap, group, [topic]) == (54 - 51) + (53 - 20)
        consumer.commit({first: OffsetAndMetadata(54, "", -1), second: OffsetAndMetadata(53, "", -1)})
        assert group_lag(kafka_bootstrap, group, [topic]) == 0
    finally:
        consumer.close()


def test_killed_workers_are_restarted_and_nothing_accepted_is_lost(tmp_path: Path) -> None:
    started_at = time.monotonic()
    data_dir, port = tmp_path / "data", free_port()
    sheet, last_sheet = tmp_path / "hours.csv", tmp_path / "late-hours.csv"
    _sheet(sheet, ROWS)
    _sheet(last_sheet, LATE_ROWS, "Late shift")
    with running_up(data_dir, port) as running:
        database_url = running.read_until(re.compile(r"PostgreSQL: (\S+)"), START_TIMEOUT_S)[1]
        bootstrap = running.read_until(re.compile(r"Kafka bootstrap servers: (127\.0\.0\.1:\d+)"), 60)[1]
        url = running.read_until(re.compile(r"API: (http://\S+)"), START_TIMEOUT_S)[1]
        token = running.read_until(re.compile(r"admin token: (\S+)"), 10)[1]
        up_pid = running.process.pid
        ledger, statistics = _child(up_pid, "worker --only ledger"), _child(up_pid, "worker --only statistics")
        broker = next(p for p in process_tree(up_pid, data_dir, None).values()
                      if f"tcp://{bootstrap}" in " ".join(p.cmdline()))
        engine = create_engine(database_url)

        def count(sql: str) -> int:
            with engine.connect() as conn:
                return int(conn.execute(text(sql)).scalar_one())

        api = Api(url, token)
        writer = ApiWriter(api, [])
        try:
            api.organisation(ORG, ["community"], AREA)
            api.organisation(AUTO_ORG, ["community"], AREA, auto_approve=True)
            writer.volunteers = _members(api, (ORG, AUTO_ORG))
            # The import checks each row against the registry before producing it: the members must be in.
            _until("the registry applied by the ledger",
                   lambda: group_lag(bootstrap, ledger_group(""), [TOPIC_ADMIN]) == 0, 60, running)

            importer = _import(sheet, data_dir)
            writer.start()
            try:
                # Kill the ledger as soon as it has begun applying the sheet: most of it is then unapplied.
                _until("the ledger applying the sheet",
                       lambda: count(f"SELECT count(*) FROM hours_logs WHERE org_id = '{ORG}'") > 0, APPLY_TIMEOUT_S,
                       running)  # the import checks every row first: a hang guard, not a timing
                ledger.kill()
                ledger.wait(10)
                unapplied_at_kill = group_lag(bootstrap, ledger_group(""), [TOPIC_ACTIVITY, TOPIC_ADMIN])
                restarted = running.read_until(re.compile(r"ledger worker restarted: pid (\d+)"), 60)
                new_ledger = int(restarted[1])
                assert new_ledger != ledger.pid
                assert any(re.search(rf"ledger worker \(pid {ledger.pid}\) exited: killed by SIGKILL; restarting",
                                     line) for line in running.lines), running.output()

                # The statistics next, while they have entries to record (the restarted ledger publishes them).
                _until("statistics with entries to record",
                       lambda: count("SELECT count(*) FROM stats_facts") > 0
                       and group_lag(bootstrap, statistics_group(""), [TOPIC_LEDGER]) > 0, 90, running)
                statistics.kill()
                statistics.wait(10)
                unrecorded_at_kill = group_lag(bootstrap, statistics_group(""), [TOPIC_LEDGER])
                restarted = running.read_until(re.compile(r"statistics worker restarted: pid (\d+)"), 60)
                new_statistics = int(restarted[1])
                assert new_statistics != statistics.pid
                assert any(f"statistics worker (pid {statistics.pid}) exited: killed by SIGKILL" in line
                           for line in running.lines), running.output()

                out, _ = importer.communicate(timeout=120)
            finally:
                if importer.poll() is None:
                    importer.kill()
                    importer.wait(10)
            assert importer.returncode == EXIT_NOT_CHECKED, out
            assert f"Produced {2 * ROWS} event(s) for {ROWS} row(s)" in out, out
            time.sleep(1)  # a few API writes after the import too
            writer.halt.set()
            writer.join(30)
            assert writer.accepted, writer.refused
            assert unapplied_at_kill > 0, "the ledger had applied everything before it was killed: no fault tested"
            assert unrecorded_at_kill > 0, "the statistics had recorded everything before they were killed"

            _until("every hours log of the sheet approved",
                   lambda: count(f"""SELECT count(*) FROM hours_decisions d JOIN hours_logs l ON l.event_id = d.log_event_id
                                     WHERE l.org_id = '{ORG}' AND d.decision = 'approved'""") == ROWS,
                   APPLY_TIMEOUT_S, running)
            outcomes = {event_id: api.outcome(event_id, timeout=APPLY_TIMEOUT_S)["status"]
                        for event_id in writer.accepted}
            assert set(outcomes.values()) <= {"applied", "rejected"}, outcomes
            applied_api = sum(1 for status in outcomes.values() if status == "applied")
            assert applied_api == len(writer.accepted)  # known volunteers, an auto-approving organisation
        finally:
            writer.halt.set()
            api.close()

        # Exactly once: one hours log and one entry an accepted event, no more.
        assert count(f"SELECT count(*) FROM hours_logs WHERE org_id = '{ORG}'") == ROWS
        assert count(f"SELECT count(*) FROM hours_logs WHERE org_id = '{AUTO_ORG}'") == applied_api
        assert count("SELECT count(*) FROM entries") == ROWS + applied_api
        assert count("SELECT count(DISTINCT event_id) FROM entries") == ROWS + applied_api
        # The statistics: one fact an entry, once the statistics group has caught up.
        _until("one statistics fact an entry",
               lambda: count("SELECT count(*) FROM stats_facts") == ROWS + applied_api, 90, running)
        assert count("SELECT count(DISTINCT entry_id) FROM stats_facts") == ROWS + applied_api
        assert count("SELECT count(*) FROM stats_facts f LEFT JOIN entries e ON e.id = f.entry_id "
                     "WHERE e.id IS NULL") == 0
        engine.dispose()
        assert group_lag(bootstrap, ledger_group(""), [TOPIC_ACTIVITY, TOPIC_ADMIN]) == 0
        # The replayed batches published their entries to tc.ledger again: the statistics consume those too
        # (recording nothing new), so their group may commit its last records a moment after the last fact.
        _until("the statistics group at lag 0",
               lambda: group_lag(bootstrap, statistics_group(""), [TOPIC_LEDGER]) == 0, 60, running)

        verify = subprocess.run([sys.executable, "-m", "timecredits.cli", "verify", "--data-dir", str(data_dir)],
                                env=fresh_clone_env(), capture_output=True, text=True, timeout=120)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert f"checked {ROWS + applied_api} entries" in verify.stdout, verify.stdout
        assert "ledger verified" in verify.stdout, verify.stdout

        # The embedded services were never restarted; the new workers are the ones running.
        assert alive(broker), "the broker died"
        assert _child(up_pid, "worker --only ledger").pid == new_ledger
        assert _child(up_pid, "worker --only statistics").pid == new_statistics

        postgres_port = int(re.search(r"@127\.0\.0\.1:(\d+)/", database_url)[1])  # type: ignore[index]
        broker_port = int(bootstrap.rsplit(":", 1)[1])

        # A clean stop with work outstanding: the ledger paused (SIGSTOP, shorter than its session timeout), a
        # last sheet produced, SIGINT; the drain must wait for it, then for the statistics.
        paused = _child(up_pid, "worker --only ledger")
        paused.suspend()
        try:
            late = _import(last_sheet, data_dir)
            out, _ = late.communicate(timeout=60)
            assert late.returncode == EXIT_NOT_CHECKED, out
            assert group_lag(bootstrap, ledger_group(""), [TOPIC_ACTIVITY]) == 2 * LATE_ROWS
            everything = process_tree(up_pid, data_dir, broker_port)
            os.killpg(up_pid, signal.SIGINT)
            running.read_until(re.compile(rf"draining: the ledger has {2 * LATE_ROWS} event\(s\) to apply"), 30)
        finally:
            paused.resume()
        try:
            code = running.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`up` did not exit within {STOP_TIMEOUT_S} s of SIGINT:\n{running.output()}")
        output = running.read_to_end(10)
        assert code == 0, output
        lines = running.lines
        drained = "drained: the workers have applied and committed everything on the broker"
        assert drained in lines, output
        assert lines.index("stopping…") < lines.index(drained) < len(lines) - 1
        assert lines[-1].strip() == "stopped", output
        left = wait_all_gone(everything)
        assert not left, "still running after `up` exited:\n" + "\n".join(describe(proc) for proc in left)
        assert not markers_alive(data_dir, broker_port)
        assert not [p for p in (port, broker_port, postgres_port) if accepts(p)]

    # What the drain applied is in the ledger and the statistics, read back from the data dir after `up`.
    total = ROWS + LATE_ROWS + applied_api
    verify = subprocess.run([sys.executable, "-m", "timecredits.cli", "verify", "--data-dir", str(data_dir)],
                            env=fresh_clone_env(), capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0 and f"checked {total} entries" in verify.stdout, verify.stdout + verify.stderr
    with EmbeddedPostgres(data_dir) as postgres:
        engine = create_engine(postgres.url)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM stats_facts")).scalar_one() == total
                assert conn.execute(text("SELECT count(*) FROM hours_decisions")).scalar_one() == total
        finally:
            engine.dispose()
    print(f"{unapplied_at_kill} events unapplied when the ledger was killed, {unrecorded_at_kill} entries unrecorded "
          f"when the statistics were; {len(writer.accepted)} API writes "
          f"accepted, {len(writer.refused)} refused; up's console:\n" + "\n".join(lines))
    assert time.monotonic() - started_at < 240


def _read_start(running: UpProcess) -> tuple[str, str]:
    """(database URL, bootstrap servers) once `up` says it is running."""
    database_url = running.read_until(re.compile(r"PostgreSQL: (\S+)"), START_TIMEOUT_S)[1]
    bootstrap = running.read_until(re.compile(r"Kafka bootstrap servers: (127\.0\.0\.1:\d+)"), 60)[1]
    running.read_until(re.compile(r"running; press Ctrl-C to stop"), START_TIMEOUT_S)
    return database_url, bootstrap


@pytest.mark.parametrize("how", ["second Ctrl-C", "drain timeout"])
def test_a_drain_that_cannot_finish_says_what_is_left(tmp_path: Path, how: str) -> None:
    """The ledger paused with 200 events on tc.activity: a second SIGINT (or --drain-timeout) ends the wait."""
    data_dir, port = tmp_path / "data", free_port()
    sheet = tmp_path / "hours.csv"
    _sheet(sheet, 100)
    extra = ("--drain-timeout", "3") if how == "drain timeout" else ()
    with running_up(data_dir, port, *extra) as running:
        database_url, bootstrap = _read_start(running)
        url = next(m[1] for line in running.lines if (m := re.search(r"API: (http://\S+)", line)))
        token = next(m[1] for line in running.lines if (m := re.search(r"admin token: (\S+)", line)))
        api = Api(url, token)
        try:
            api.organisation(ORG, ["community"], AREA)
            _members(api, (ORG,))
        finally:
            api.close()
        # The registry's events applied before the ledger is paused: the drain then has the sheet's alone.
        _until("the registry applied by the ledger", lambda: group_lag(bootstrap, ledger_group(""), [TOPIC_ADMIN]) == 0,
               60, running)
        up_pid = running.process.pid
        paused = _child(up_pid, "worker --only ledger")
        paused.suspend()
        try:
            importer = _import(sheet, data_dir)
            out, _ = importer.communicate(timeout=60)
            assert importer.returncode == EXIT_NOT_CHECKED, out
            everything = process_tree(up_pid, data_dir, int(bootstrap.rsplit(":", 1)[1]))
            os.killpg(up_pid, signal.SIGINT)
            running.read_until(re.compile(r"draining: the ledger has 200 event\(s\) to apply"), 30)
            if how == "second Ctrl-C":
                asked = time.monotonic()
                os.killpg(up_pid, signal.SIGINT)
            running.read_until(re.compile(
                r"not drained: 200 event\(s\) not yet applied \(the ledger: 200\); the embedded broker keeps them "
                r"in memory only, so they are lost when it stops now"), 30)
            if how == "second Ctrl-C":
                assert time.monotonic() - asked < 5
        finally:
            paused.resume()
        code = running.process.wait(timeout=STOP_TIMEOUT_S)
        output = running.read_to_end(10)
        assert code == 0, output
        assert running.lines[-1].strip() == "stopped", output
        assert not wait_all_gone(everything)


def test_the_death_of_the_embedded_broker_stops_up_with_an_error(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    with running_up(data_dir, port) as running:
        _, bootstrap = _read_start(running)
        up_pid = running.process.pid
        everything = process_tree(up_pid, data_dir, int(bootstrap.rsplit(":", 1)[1]))
        broker = next(p for p in everything.values() if f"tcp://{bootstrap}" in " ".join(p.cmdline()))
        broker.kill()
        running.read_until(re.compile(r"the embedded broker died; stopping everything"), 30)
        code = running.process.wait(timeout=STOP_TIMEOUT_S)
        output = running.read_to_end(10)
        assert code == 1, output
        assert running.lines[-1].strip() == "stopped: the embedded broker died", output
        left = wait_all_gone(everything)
        assert not left, "\n".join(describe(proc) for proc in left)


def test_up_refuses_an_api_port_in_use_before_starting_anything(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with running_up(data_dir, port) as running:
            code = running.process.wait(timeout=60)
            output = running.read_to_end(10)
    assert code == 1, output
    assert f"Port {port} on 127.0.0.1 is already in use." in output
    assert "PostgreSQL:" not in output
    assert not (data_dir / "postgres").exists()
