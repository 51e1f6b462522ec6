"""`timecredits up` and mail (docs/design.md §8.4): with no mail server configured it starts the development mailbox
as a supervised child and points the API's SMTP settings at it, and a message sent to that port lands as a file in
`<data-dir>/mailbox`; with `TIMECREDITS_SMTP_HOST` set it starts none and the API keeps the configured server.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import free_port
from tests.e2e.test_up import START_TIMEOUT_S
from tests.e2e.up_helpers import (
    STOP_TIMEOUT_S,
    UpProcess,
    accepts,
    describe,
    fresh_clone_env,
    process_tree,
    running_up,
    wait_all_gone,
)
from timecredits.mail import SmtpMailer
from timecredits.mailbox import list_messages, running_mailbox
from timecredits.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.integration]


def _child(started: dict[int, psutil.Process], command: str) -> psutil.Process | None:
    return next((proc for proc in started.values() if f"timecredits.cli {command}" in " ".join(proc.cmdline())), None)


def _stop(running: UpProcess) -> str:
    os.killpg(running.process.pid, signal.SIGTERM)
    try:
        code = running.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`up` did not exit within {STOP_TIMEOUT_S} s of SIGTERM:\n{running.output()}")
    output = running.read_to_end(10)
    assert code == 0, output
    return output


def test_up_starts_a_mailbox_and_mail_sent_to_it_lands_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_up(data_dir, free_port()) as running:
        log = Path(running.read_until(re.compile(r"^mailbox: pid \d+, log (\S+)$"), START_TIMEOUT_S)[1])
        assert log == data_dir / "logs" / "mailbox.log"
        running.read_until(re.compile(r"running; press Ctrl-C to stop"), START_TIMEOUT_S)
        port = int(re.findall(r"mailbox: SMTP on 127\.0\.0\.1:(\d+)", log.read_text())[-1])

        started = process_tree(running.process.pid, data_dir, None)
        mailbox, api = _child(started, "mailbox"), _child(started, "api")
        assert mailbox is not None and api is not None, [describe(proc) for proc in started.values()]
        assert mailbox.ppid() == running.process.pid
        env = api.environ()
        assert {name: env.get(name) for name in ("TIMECREDITS_SMTP_HOST", "TIMECREDITS_SMTP_PORT",
                                                 "TIMECREDITS_SMTP_STARTTLS", "TIMECREDITS_DEV_MAILBOX_DIR")} == {
            "TIMECREDITS_SMTP_HOST": "127.0.0.1", "TIMECREDITS_SMTP_PORT": str(port),
            "TIMECREDITS_SMTP_STARTTLS": "false", "TIMECREDITS_DEV_MAILBOX_DIR": str(data_dir / "mailbox")}

        # Sent with the settings the API was given, as the API sends a sign-in link.
        settings = Settings(**{name: value for name, value in env.items() if name.startswith("TIMECREDITS_SMTP_")})
        SmtpMailer(settings).send("amina@example.org", "Your sign-in link", "https://tc.example/sign-in/x",
                                  "<a href=\"https://tc.example/sign-in/x\">Sign in</a>")
        [kept] = list_messages(data_dir / "mailbox")
        assert (kept.to, kept.subject, kept.text) == (("amina@example.org",), "Your sign-in link",
                                                     "https://tc.example/sign-in/x\n")

        output = _stop(running)
        assert output.splitlines()[-1].strip() == "stopped", output
        left = wait_all_gone(started)
        assert not left, "still running after `up` exited:\n" + "\n".join(describe(proc) for proc in left)
        assert not accepts(port)


def test_up_with_a_mail_server_configured_starts_no_mailbox(tmp_path: Path) -> None:
    data_dir, council = tmp_path / "data", tmp_path / "council-mail"
    council_port = free_port()
    env = {**fresh_clone_env(), "TIMECREDITS_SMTP_HOST": "127.0.0.1", "TIMECREDITS_SMTP_PORT": str(council_port),
           "TIMECREDITS_SMTP_STARTTLS": "false"}
    with running_mailbox(council, council_port), running_up(data_dir, free_port(), env=env) as running:
        running.read_until(re.compile(r"running; press Ctrl-C to stop"), START_TIMEOUT_S)
        assert not [line for line in running.lines if line.startswith("mailbox:")], running.output()
        started = process_tree(running.process.pid, data_dir, None)
        assert _child(started, "mailbox") is None
        api = _child(started, "api")
        assert api is not None
        env = api.environ()
        assert (env.get("TIMECREDITS_SMTP_PORT"), env.get("TIMECREDITS_DEV_MAILBOX_DIR")) == (str(council_port), None)
        _stop(running)
    assert not (data_dir / "mailbox").exists()
