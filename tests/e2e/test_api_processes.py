"""`timecredits api --workers 2`: a process per worker, each accepting on a socket of its own (SO_REUSEPORT),
so that long-lived connections spread over both; a process that dies is replaced; SIGTERM stops them all."""
from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.e2e.api_stack import ApiProcess
from tests.e2e.conftest import Stack
from tests.e2e.stack import wait_until

PROCESSES_ADMIN = "tc_admin-for-processes-" + "0" * 16

pytestmark = [pytest.mark.broker, pytest.mark.integration, pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")]


def _listeners(supervisor: int, port: int) -> set[int]:
    """The supervisor's children that accept connections on `port` themselves."""
    found = set()
    for child in psutil.Process(supervisor).children():
        try:
            if any(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port for c in child.net_connections("tcp")):
                found.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture()
def api(shared_stack: Stack) -> Iterator[ApiProcess]:
    process = ApiProcess({**shared_stack.env(), "TIMECREDITS_ADMIN_TOKEN": PROCESSES_ADMIN},
                         shared_stack.tmp / "api-processes.log", workers=2)
    try:
        process.wait_answering("/healthz", 200, timeout=60)
        yield process
    finally:
        process.stop()


def test_connections_spread_over_both_processes_and_a_dead_one_is_replaced(api: ApiProcess) -> None:
    clients = [httpx.Client(base_url=api.url, timeout=10) for _ in range(64)]
    try:
        for client in clients:
            assert client.get("/healthz").status_code == 200
        serving = _listeners(api.pid, api.port)
        assert len(serving) == 2, serving  # 64 kept-alive connections, accepted by both processes
        sockets = [_listening_socket(pid, api.port) for pid in sorted(serving)]
        assert sockets[0] != sockets[1], sockets  # a listening socket each, not one shared socket

        victim = min(serving)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(_listening_children(api.pid, api.port, exclude=victim)) == 2, 60,
                   "a replacement API process")
        for client in clients:  # connections of the dead process are gone; new ones are answered
            try:
                assert client.get("/healthz").status_code == 200
            except httpx.TransportError:
                assert client.get("/healthz").status_code == 200
    finally:
        for client in clients:
            client.close()


def _listening_socket(pid: int, port: int) -> str:
    """The kernel's identity (`socket:[inode]`) of the socket `pid` listens on `port` with."""
    listening = [c for c in psutil.Process(pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert len(listening) == 1, listening
    return os.readlink(f"/proc/{pid}/fd/{listening[0].fd}")


def _listening_children(supervisor: int, port: int, exclude: int) -> set[int]:
    """Children answering on `port` now (a fresh connection each, until every child has been reached)."""
    children = {c.pid for c in psutil.Process(supervisor).children() if c.pid != exclude}
    answered: set[int] = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and answered != children:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            try:
                if client.get("/healthz").status_code == 200:
                    answered |= _listeners(supervisor, port) & children
            except httpx.TransportError:  # a replacement still starting: listening, not answering yet
                continue
    return answered


def test_a_revoked_token_is_refused_by_every_process_soon_after(api: ApiProcess) -> None:
    """Each process caches a token it resolved for at most a second (docs/design.md §5.1): once revoked, the
    token is refused by both, on every connection, without waiting for anything else."""
    admin = httpx.Client(base_url=api.url, timeout=10, headers={"Authorization": f"Bearer {PROCESSES_ADMIN}"})
    created = admin.post("/v1/tokens", json={"role": "lead", "label": "revoked across processes"})
    assert created.status_code == 201, created.text
    token, token_id = created.json()["token"], created.json()["id"]
    clients = [httpx.Client(base_url=api.url, timeout=10, headers={"Authorization": f"Bearer {token}"})
               for _ in range(32)]
    try:
        for client in clients:  # every process resolves (and caches) the token on some connection
            assert client.get("/v1/tokens").status_code == 200
        serving = _listeners(api.pid, api.port)
        assert len(serving) == 2, serving
        assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204
        revoked_at = time.monotonic()
        refused: set[int] = set()
        while len(refused) < len(clients):
            assert time.monotonic() - revoked_at < 30, "a process kept accepting a revoked token"  # a hang guard
            for number, client in enumerate(clients):
                if number not in refused:
                    response = client.get("/v1/tokens")
                    if response.status_code == 401:
                        assert response.json()["error"]["code"] == "token_revoked"
                        refused.add(number)
            time.sleep(0.05)
        for client in clients:  # and it stays refused
            assert client.get("/v1/tokens").status_code == 401
        print(f"revoked token refused on all {len(clients)} connections after "
              f"{time.monotonic() - revoked_at:.2f} s")
    finally:
        admin.close()
        for client in clients:
            client.close()


def test_sigterm_stops_the_supervisor_and_every_api_process(api: ApiProcess) -> None:
    children = psutil.Process(api.pid).children()
    assert len(children) >= 2
    assert api.stop(timeout=30) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive
