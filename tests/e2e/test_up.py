"""`timecredits up --demo` as on a fresh clone: it starts everything, serves the demo, and Ctrl-C leaves nothing.

The command runs without DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS or any TIMECREDITS_* setting, so it starts the
embedded PostgreSQL and broker itself in the test's data directory. Before the SIGINT, the test collects every
process `up` is responsible for: its descendants (worker, API, the Tansu broker), the postmaster (started by
pg_ctl, so re-parented away from `up`: found through `postgres/postmaster.pid`) with its backends, and anything
whose command line names the data directory or the broker's listener. After `up` exits, none may be alive
(a zombie counts as gone) and no port it listened on may still accept connections.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import psutil
import psycopg2
import pytest

from tests.e2e.conftest import free_port
from tests.e2e.up_helpers import (
    STOP_TIMEOUT_S,
    UpProcess,
    accepts,
    describe,
    fresh_clone_env,
    markers_alive,
    postmaster,
    process_tree,
    running_up,
    wait_all_gone,
)
from timecredits.demo import volunteering

pytestmark = [pytest.mark.broker, pytest.mark.integration]

START_TIMEOUT_S = 240  # embedded services, migrations, a worker, the API, ~10,000 demo events, verify
DECIMAL_CREDITS = re.compile(r"^-?[0-9]+\.[0-9]{2}$")


@pytest.fixture()
def up(tmp_path: Path) -> Iterator[tuple[UpProcess, Path, int]]:
    data_dir = tmp_path / "data"
    port = free_port()
    with running_up(data_dir, port, "--demo") as running:
        yield running, data_dir, port


def _database_users_of_children(started: dict[int, psutil.Process], postgres_port: int) -> set[str]:
    """The roles the API's and workers' PostgreSQL connections are logged in as: each child's client ports,
    looked up in pg_stat_activity as the superuser."""
    ports: set[int] = set()
    for proc in started.values():
        if not any(part in " ".join(proc.cmdline()) for part in ("timecredits.cli worker", "timecredits.cli api")):
            continue
        ports |= {c.laddr.port for c in proc.net_connections(kind="tcp")
                  if c.raddr and c.raddr.port == postgres_port and c.status == psutil.CONN_ESTABLISHED}
    assert ports, "the API and workers hold no connection to PostgreSQL"
    conn = psycopg2.connect(host="127.0.0.1", port=postgres_port, user="postgres", dbname="timecredits")
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT DISTINCT usename FROM pg_stat_activity WHERE client_port = ANY (%s)", (list(ports),))
            return {row[0] for row in cursor.fetchall()}
    finally:
        conn.close()


def test_up_demo_serves_and_ctrl_c_leaves_nothing_behind(up: tuple[UpProcess, Path, int]) -> None:
    running, data_dir, api_port = up
    postgres_port = int(running.read_until(re.compile(r"PostgreSQL: \S+@127\.0\.0\.1:(\d+)/"), START_TIMEOUT_S)[1])
    broker_port = int(running.read_until(re.compile(r"Kafka bootstrap servers: 127\.0\.0\.1:(\d+)"), 60)[1])
    spent = running.read_until(re.compile(r"spend code: (v-[0-9a-f]{12}) made ([0-9]{4} [0-9]{4}) for (\S+); the "
                                          r"front desk took 1\.00 credits with it \((\S+)\); offered again: (\S+)"),
                               START_TIMEOUT_S)
    assert (spent[4], spent[5]) == ("applied", "code_used"), spent[0]
    links = {}
    for _ in range(4):
        line = running.read_until(re.compile(r"^  (.+): (http://\S+/app/sign-in/link/\S+)$"), START_TIMEOUT_S)
        links[line[1]] = line[2]
    assert set(links) == {"coordinator at Brixton Lunch Club", "front desk at York Hall Leisure Centre",
                          f"volunteer {volunteering().ids[0]}", "programme lead"}, links
    url = running.read_until(re.compile(r"API: (http://\S+)"), START_TIMEOUT_S)[1]
    token = running.read_until(re.compile(r"admin token: (\S+)"), 10)[1]
    assert url == f"http://127.0.0.1:{api_port}"

    pages = {"coordinator at Brixton Lunch Club": ["/app/members", "/app/approvals", "/app/hours/group"],
             "front desk at York Hall Leisure Centre": ["/app/take", "/app/listings", "/app/open-bookings"],
             f"volunteer {volunteering().ids[0]}": ["/app/statement", "/app/opportunities", "/app/hours", "/app/pay",
                                                    "/app/privacy"],
             "programme lead": ["/app/report", "/v1/stats/participation"]}
    for who, link in links.items():  # each printed link signs its person in; their pages answer as up's role
        with httpx.Client(timeout=30) as person:
            page = person.get(link)
            assert page.status_code == 200 and "<h1>Sign in as " in page.text, (who, page.status_code)
            pre = re.search(r'name="pre_token" value="([^"]+)"', page.text)
            assert pre is not None
            signed_in = person.post(link, data={"pre_token": pre[1]})
            assert signed_in.status_code == 303, (who, signed_in.text[:300])
            for path in ["/app", *pages[who]]:
                answer = person.get(url + path)
                assert answer.status_code == 200, (who, path, answer.status_code, answer.text[:300])
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "database": True, "broker": True}
    first = volunteering().ids[0]
    response = httpx.get(f"{url}/v1/volunteers/{first}/balance", headers={"Authorization": f"Bearer {token}"},
                         timeout=10)
    assert response.status_code == 200, response.text
    balance = response.json()
    assert balance["volunteer_id"] == first
    for name in ("balance", "held", "available"):
        assert DECIMAL_CREDITS.match(balance[name]), balance
    assert Decimal(balance["balance"]) > 0, balance
    assert Decimal(balance["balance"]) == Decimal(balance["held"]) + Decimal(balance["available"]), balance
    # The subject-access export of a demo volunteer holds their profile and every entry of their statement.
    admin = {"Authorization": f"Bearer {token}"}
    export = httpx.get(f"{url}/v1/volunteers/{first}/export", headers=admin, timeout=30).json()
    assert export["profile"][0]["volunteer_id"] == first and export["profile"][0]["area"]
    statement, before = [], None
    while True:
        page = httpx.get(f"{url}/v1/volunteers/{first}/statement", headers=admin, timeout=30,
                         params={"limit": 200, **({"before": before} if before else {})}).json()
        statement += [(line["entry_id"], line["amount"]) for line in page["items"]]
        before = page["next_before"]
        if before is None:
            break
    assert statement and sorted(statement) == sorted(
        (row["entry_id"], row["amount"]) for row in export["ledger"] if row["credits"] == "to spend")
    assert {row["what"] for row in export["sign_in"]} >= {"account", "session"}

    # `timecredits reverse` finds the running `up` by itself and corrects an approval, its reason on the statement.
    items = httpx.get(f"{url}/v1/volunteers/{first}/statement", headers=admin, params={"limit": 200},
                      timeout=30).json()["items"]
    available = Decimal(httpx.get(f"{url}/v1/volunteers/{first}/balance", headers=admin, timeout=10).json()["available"])
    target = next(i for i in items if i["kind"] == "hours_approved" and Decimal(i["amount"]) <= available)
    reversed_ = subprocess.run(
        [sys.executable, "-m", "timecredits.cli", "reverse", target["event_id"], "--reason", "Logged twice in the demo",
         "--code", "duplicate", "--data-dir", str(data_dir)],
        env=fresh_clone_env(), capture_output=True, text=True, timeout=120)
    assert reversed_.returncode == 0 and "applied" in reversed_.stdout, reversed_.stdout + reversed_.stderr
    newest = httpx.get(f"{url}/v1/volunteers/{first}/statement", headers=admin, params={"limit": 1},
                       timeout=30).json()["items"][0]
    assert (newest["kind"], newest["related_event_id"], newest["reason"]) == (
        "entry_reversed", target["event_id"], "Logged twice in the demo")
    again = subprocess.run(
        [sys.executable, "-m", "timecredits.cli", "reverse", target["event_id"], "--reason", "again",
         "--data-dir", str(data_dir)], env=fresh_clone_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "already_reversed" in again.stdout, again.stdout + again.stderr

    started = process_tree(running.process.pid, data_dir, broker_port)
    names = {" ".join(proc.cmdline()) for proc in started.values()}
    assert any("timecredits.cli worker" in name for name in names), names
    assert any("timecredits.cli api" in name for name in names), names
    assert any(f"tcp://127.0.0.1:{broker_port}" in name for name in names), names
    assert any("timecredits.cli mailbox" in name for name in names), names  # no mail server set (design.md §8.4)
    mailbox_port = int(re.findall(r"SMTP on 127\.0\.0\.1:(\d+)", (data_dir / "logs" / "mailbox.log").read_text())[-1])
    server = postmaster(data_dir)
    assert server is not None and server.pid in started, "no postmaster found through postmaster.pid"
    assert _database_users_of_children(started, postgres_port) == {"timecredits_app"}  # docs/design.md §6.1
    assert all(accepts(port) for port in (api_port, broker_port, postgres_port, mailbox_port))

    os.killpg(running.process.pid, signal.SIGINT)  # what Ctrl-C does to the terminal's foreground job
    try:
        code = running.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`up` did not exit within {STOP_TIMEOUT_S} s of SIGINT:\n{running.output()}")
    output = running.read_to_end(10)
    assert code == 0, output
    assert output.splitlines()[-1].strip() == "stopped", output

    left = wait_all_gone(started)
    assert not left, "still running after `up` exited:\n" + "\n".join(describe(proc) for proc in left)
    assert not markers_alive(data_dir, broker_port)
    assert not [port for port in (api_port, broker_port, postgres_port, mailbox_port) if accepts(port)]
