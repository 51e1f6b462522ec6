"""Run the API on N processes, each accepting on a listening socket of its own (SO_REUSEPORT).

Why not uvicorn's `--workers`: its processes share one listening socket, and whichever is idle in `accept`
first takes the next connection. Keep-alive clients stay on the process they landed on, so connections split
unevenly and the busier process answers slower while the other idles. With one
socket a process and SO_REUSEPORT, the kernel spreads connections over the sockets by their address hash.

The supervisor binds every socket itself (so a port in use fails at once, and port 0 picks one port for all),
restarts a process that dies (its socket stays open meanwhile: connections queue rather than being refused),
and stops all of them on SIGTERM or SIGINT.
"""
from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from timecredits.settings import Settings

log = logging.getLogger("timecredits.api")

RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 20.0


def can_reuse_port() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on `host:port` now.

    Bound without SO_REUSEPORT, which would let a second API share the port of one already running.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets listening on the same address; port 0 is resolved once, by the first of them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(2048)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _serve_one(sock: socket.socket, options: dict[str, Any]) -> None:
    import uvicorn

    uvicorn.Server(uvicorn.Config("api.main:app", **options)).run(sockets=[sock])


@dataclass
class ReusePortSupervisor:
    sockets: list[socket.socket]
    options: dict[str, Any]
    processes: list[SpawnProcess] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.stopping.set())
        self.processes = [self._start(n) for n in range(len(self.sockets))]
        try:
            while not self.stopping.wait(0.5):
                for n, process in enumerate(self.processes):
                    if not process.is_alive():
                        log.warning("API process %s exited with %s; restarting it", process.pid, process.exitcode)
                        time.sleep(RESTART_DELAY_S)
                        self.processes[n] = self._start(n)
        finally:
            self._stop_all()

    def _start(self, n: int) -> SpawnProcess:
        process = multiprocessing.get_context("spawn").Process(
            target=_serve_one, args=(self.sockets[n], self.options), name=f"timecredits-api-{n}")
        process.start()
        return process

    def _stop_all(self) -> None:
        running = [p for p in self.processes if p.is_alive()]
        for process in running:
            process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sock in self.sockets:
            sock.close()


def connection_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the API: the slow-client limits of docs/design.md §5.5 (api.connections) and
    `TIMECREDITS_HTTP_*`, no access log (the metrics count requests)."""
    return {
        "http": "api.connections:GuardedHttpToolsProtocol",  # by name: it is imported in each API process
        "timeout_keep_alive": settings.http_keep_alive_timeout_s,
        "limit_concurrency": settings.http_max_connections,
        "log_level": "warning",
        "access_log": False,
    }


def serve(host: str, port: int, workers: int, **options: Any) -> None:
    """Serve the API: in this process for one worker, else on `workers` processes with a socket each."""
    import uvicorn

    if workers <= 1 or not can_reuse_port():
        uvicorn.run("api.main:app", host=host, port=port, workers=workers, **options)
        return
    ReusePortSupervisor(listening_sockets(host, port, workers), options).run()
