"""docs/api.md, run as a reader would: `timecredits up --demo`, then every `bash` block of the page, in order.

One `up` serves the whole module, started as on a fresh clone (no DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS or
TIMECREDITS_* setting, a data directory of its own, a free port). Its output must show every line of the page's
first `console` block (the demo's counts and balances, the verification). The `bash` blocks then run in one
bash process, so that the variables and the function they define carry over; the lines `export TC=...` and
`export ADMIN=...` get the URL and the admin token this `up` printed, as the page tells the reader to do. What
each block prints must match the `json` (or plain) blocks after it: every figure, balance, count and entry id
exactly, and each placeholder (`<uuid:log>`, `<token>`, ...) by its shape, a named one by the same value
wherever it appears (tests/e2e/doc_walkthrough.py). Last, Ctrl-C must give the page's closing `console` block.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.e2e.conftest import free_port
from tests.e2e.doc_walkthrough import Matcher, check_output, console_blocks, steps
from tests.e2e.test_up import START_TIMEOUT_S
from tests.e2e.up_helpers import STOP_TIMEOUT_S, UpProcess, fresh_clone_env

pytestmark = [pytest.mark.broker, pytest.mark.integration]

PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
STEP_TIMEOUT_S = 60  # a step waits for the worker at most a few seconds
DOC_PORT = "8000"  # the page shows `up`'s default port; this `up` listens on a free one
_DONE = "__timecredits_doc_step_done__"


@dataclass
class Walkthrough:
    up: UpProcess
    url: str
    admin_token: str
    matcher: Matcher


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walkthrough]:
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            service_missing(f"docs/api.md needs {tool}")
    data_dir = tmp_path_factory.mktemp("docs-api") / "data"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "timecredits.cli", "up", "--demo", "--data-dir", str(data_dir), "--port", str(port)],
        env=fresh_clone_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    up = UpProcess(process)
    try:
        up.read_until(re.compile(r"running; press Ctrl-C to stop"), START_TIMEOUT_S)
        url = next(m[1] for line in up.lines if (m := re.search(r"API: (http://\S+)", line)))
        token = next(m[1] for line in up.lines if (m := re.search(r"admin token: (\S+)", line)))
        assert url == f"http://127.0.0.1:{port}", url
        yield Walkthrough(up, url, token, Matcher())
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _console_lines(block_text: str, port: int) -> list[str]:
    """What `up` prints, as the page shows it: the reader's own input (`$ ...`, `^C`) left out."""
    return [line.replace(f":{DOC_PORT}", f":{port}") for line in block_text.splitlines()
            if line.strip() and not line.startswith("$ ") and line.strip() != "^C"]


def test_up_prints_what_the_page_shows(walkthrough: Walkthrough) -> None:
    start = console_blocks(PAGE.read_text())[0]
    port = int(walkthrough.url.rsplit(":", 1)[1])
    walkthrough.matcher.lines_in_order(_console_lines(start.text, port), walkthrough.up.lines,
                                       f"`up` against the block at line {start.line}")


class _Shell:
    """One bash process; each step is sourced in it, so what a step defines stays for the next."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.workdir = workdir
        self.process = subprocess.Popen(["bash", "--noprofile", "--norc"], env=env, cwd=workdir,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)

    def run(self, n: int, script: str) -> tuple[int, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        path = self.workdir / f"step-{n}.sh"
        out = self.workdir / f"step-{n}.out"
        path.write_text(script + "\n")
        self.process.stdin.write(f"source {path} > {out} 2>&1; echo \"{_DONE} $?\"\n")
        self.process.stdin.flush()
        timer = _Deadline(self.process, STEP_TIMEOUT_S)
        try:
            line = self.process.stdout.readline()
        finally:
            timer.cancel()
        if not line.startswith(_DONE):
            raise AssertionError(f"step {n} did not finish within {STEP_TIMEOUT_S} s:\n{script}\n"
                                 f"output so far:\n{out.read_text() if out.exists() else ''}")
        return int(line.split()[1]), out.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class _Deadline:
    """Kills the shell if a step hangs, so that `readline` returns."""

    def __init__(self, process: subprocess.Popen[str], seconds: float) -> None:
        import threading

        self._timer = threading.Timer(seconds, process.kill)
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


def _with_this_stack(script: str, walkthrough: Walkthrough) -> str:
    """The page's `export TC=...` and `export ADMIN=...` lines, with this run's URL and admin token."""
    values = {"TC": walkthrough.url, "ADMIN": walkthrough.admin_token}
    return re.sub(r"^export (TC|ADMIN)=.*$", lambda m: f"export {m[1]}={values[m[1]]}", script, flags=re.MULTILINE)


def test_every_command_prints_what_the_page_shows(walkthrough: Walkthrough) -> None:
    page = steps(PAGE.read_text())
    assert len(page) > 10 and all(step.outputs for step in page[2:]), "the page lost its commands or outputs"
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS") and not key.startswith("TIMECREDITS_")}
    with tempfile.TemporaryDirectory(prefix="tc-docs-") as workdir:
        shell = _Shell(env, Path(workdir))
        try:
            for n, step in enumerate(page):
                code, output = shell.run(n, _with_this_stack(step.command.text, walkthrough))
                assert code == 0, f"the block at line {step.command.line} exited {code}:\n{output}"
                for block in step.outputs:
                    check_output(walkthrough.matcher, block, output)
        finally:
            shell.close()


def test_ctrl_c_stops_as_the_page_shows(walkthrough: Walkthrough) -> None:
    stop = console_blocks(PAGE.read_text())[-1]
    assert "^C" in stop.text.splitlines()
    process = walkthrough.up.process
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does to the terminal's foreground job
    code = process.wait(timeout=STOP_TIMEOUT_S)
    output = walkthrough.up.read_to_end(10)
    assert code == 0, output
    port = int(walkthrough.url.rsplit(":", 1)[1])
    walkthrough.matcher.lines_in_order(_console_lines(stop.text, port), walkthrough.up.lines,
                                       f"`up` stopping against the block at line {stop.line}")
