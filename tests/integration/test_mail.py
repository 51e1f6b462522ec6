"""Mail over real SMTP (docs/design.md §8.1, §8.4): `SmtpMailer` sends to the development mailbox (aiosmtpd on a
free port), `list_messages` and `read_message` read back what it kept, and every failure is one `MailNotSent`
with a plain message that never holds the password. No SMTP is mocked: each server here is a real socket.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from timecredits.mail import MailNotSent, SmtpMailer
from timecredits.mailbox import HOST, free_port, list_messages, read_message, running_mailbox, store
from timecredits.settings import Settings

PASSWORD = "correct-horse-battery-staple-7"


def _settings(port: int, **extra: str) -> Settings:
    return Settings(TIMECREDITS_SMTP_HOST=HOST, TIMECREDITS_SMTP_PORT=port, TIMECREDITS_SMTP_STARTTLS=False,
                    TIMECREDITS_SMTP_TIMEOUT=5, **extra)


@pytest.fixture()
def mailbox(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    directory = tmp_path / "mailbox"
    port = free_port()
    with running_mailbox(directory, port):
        yield directory, port


def test_a_message_sent_lands_in_the_mailbox_with_its_text_and_html(mailbox: tuple[Path, int]) -> None:
    directory, port = mailbox
    mailer = SmtpMailer(_settings(port, TIMECREDITS_MAIL_FROM="Hackney Time Credits <no-reply@hackney.example>"))
    before = datetime.now(UTC)
    message_id = mailer.send("Amina Yusuf <amina@example.org>", "Your sign-in link — timecredits",
                             "Sign in: https://tc.example/sign-in/abc\nIt works once, for 15 minutes.",
                             "<p>Sign in: <a href=\"https://tc.example/sign-in/abc\">sign in</a></p>")

    [stored] = list_messages(directory)
    assert stored.sender == "Hackney Time Credits <no-reply@hackney.example>"
    assert stored.to == ("amina@example.org",)
    assert stored.subject == "Your sign-in link — timecredits"
    assert stored.text is not None and "https://tc.example/sign-in/abc\nIt works once" in stored.text
    assert stored.html is not None and "<a href=\"https://tc.example/sign-in/abc\">" in stored.html
    assert before - timedelta(seconds=1) <= stored.received_at <= datetime.now(UTC)
    assert read_message(directory, stored.id) == stored
    files = sorted(p.name for p in directory.iterdir())
    assert files == [f"{stored.id}.eml"], files  # no temporary file left behind
    assert re.fullmatch(r"[0-9]{8}T[0-9]{12}Z-[0-9a-f]{32}", stored.id)
    raw = (directory / f"{stored.id}.eml").read_bytes()
    assert message_id.encode() in raw and b"@hackney.example>" in message_id.encode()


def test_a_plain_text_message_has_no_html(mailbox: tuple[Path, int]) -> None:
    directory, port = mailbox
    SmtpMailer(_settings(port)).send("volunteer@example.org", "Plain", "only text")
    [stored] = list_messages(directory)
    assert (stored.text, stored.html) == ("only text\n", None)
    assert stored.sender == "timecredits <no-reply@localhost>"


def test_messages_are_listed_newest_first_and_read_by_id(mailbox: tuple[Path, int]) -> None:
    directory, port = mailbox
    mailer = SmtpMailer(_settings(port))
    for n in range(3):
        mailer.send(f"person{n}@example.org", f"message {n}", f"body {n}")
    listed = list_messages(directory)
    assert [m.subject for m in listed] == ["message 2", "message 1", "message 0"]
    assert [m.subject for m in list_messages(directory, limit=2)] == ["message 2", "message 1"]
    assert read_message(directory, listed[1].id) == listed[1]


def test_reading_ignores_what_is_not_a_kept_message(mailbox: tuple[Path, int]) -> None:
    directory, port = mailbox
    SmtpMailer(_settings(port)).send("a@example.org", "kept", "kept")
    (directory / ".20261202T000000000000Z-0123456789abcdef0123456789abcdef.tmp").write_bytes(b"Subject: half")
    (directory / "notes.eml").write_bytes(b"Subject: not one of ours")
    assert [m.subject for m in list_messages(directory)] == ["kept"]
    listed_id = list_messages(directory)[0].id
    for not_an_id in ("../../etc/passwd", "notes", "", f"{listed_id}\n", "20261202T000000000000Z-" + "0" * 32):
        assert read_message(directory, not_an_id) is None
    assert list_messages(directory / "absent") == []


def test_store_orders_by_the_time_received(tmp_path: Path) -> None:
    older = store(tmp_path, b"Subject: older\r\n\r\nx\r\n", datetime(2026, 1, 1, 9, tzinfo=UTC))
    newer = store(tmp_path, b"Subject: newer\r\n\r\nx\r\n", datetime(2026, 1, 1, 10, tzinfo=UTC))
    listed = list_messages(tmp_path)
    assert [m.id for m in listed] == [newer, older]
    assert listed[1].received_at == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert listed[0].to == () and listed[0].text == "x\n"


def test_a_server_that_is_down_gives_mail_not_sent_without_the_password() -> None:
    port = free_port()  # nothing listens there
    mailer = SmtpMailer(_settings(port, TIMECREDITS_SMTP_USERNAME="tc", TIMECREDITS_SMTP_PASSWORD=PASSWORD))
    with pytest.raises(MailNotSent, match=rf"could not reach the mail server 127\.0\.0\.1:{port}: ") as failed:
        mailer.send("amina@example.org", "link", "text")
    assert PASSWORD not in str(failed.value) and PASSWORD not in repr(mailer)


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts the connection (the backlog does), never greets
        listener.bind((HOST, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        mailer = SmtpMailer(Settings(TIMECREDITS_SMTP_HOST=HOST, TIMECREDITS_SMTP_PORT=port,
                                     TIMECREDITS_SMTP_STARTTLS=False, TIMECREDITS_SMTP_TIMEOUT=0.5))
        started = time.monotonic()
        with pytest.raises(MailNotSent, match="did not answer within 0.5 s"):
            mailer.send("amina@example.org", "link", "text")
        assert time.monotonic() - started < 5


def test_starttls_against_a_server_without_tls_is_refused(mailbox: tuple[Path, int]) -> None:
    directory, port = mailbox
    mailer = SmtpMailer(Settings(TIMECREDITS_SMTP_HOST=HOST, TIMECREDITS_SMTP_PORT=port,
                                 TIMECREDITS_SMTP_USERNAME="tc", TIMECREDITS_SMTP_PASSWORD=PASSWORD))
    with pytest.raises(MailNotSent, match="does not offer what was asked of it") as failed:
        mailer.send("amina@example.org", "link", "text")
    assert PASSWORD not in str(failed.value)
    assert list_messages(directory) == []  # nothing sent in clear after a failed STARTTLS


def test_a_login_the_server_does_not_offer_is_mail_not_sent(mailbox: tuple[Path, int]) -> None:
    directory, port = mailbox
    mailer = SmtpMailer(_settings(port, TIMECREDITS_SMTP_USERNAME="tc", TIMECREDITS_SMTP_PASSWORD=PASSWORD))
    with pytest.raises(MailNotSent) as failed:
        mailer.send("amina@example.org", "link", "text")
    assert PASSWORD not in str(failed.value)
    assert list_messages(directory) == []


def test_no_server_configured_and_bad_addresses_are_mail_not_sent() -> None:
    with pytest.raises(MailNotSent, match="TIMECREDITS_SMTP_HOST is not set"):
        SmtpMailer(Settings()).send("amina@example.org", "link", "text")
    mailer = SmtpMailer(_settings(free_port()))
    with pytest.raises(MailNotSent, match="not an e-mail address"):
        mailer.send("amina", "link", "text")
    with pytest.raises(MailNotSent, match="line break"):
        mailer.send("amina@example.org", "link\r\nBcc: everyone@example.org", "text")


def test_the_mailbox_command_keeps_mail_until_sigterm(tmp_path: Path) -> None:
    directory, port = tmp_path / "box", free_port()
    log = tmp_path / "mailbox.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "timecredits.cli", "mailbox", "--dir", str(directory),
                                    "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "COLUMNS": "300"})
    try:
        deadline = time.monotonic() + 30
        while f"SMTP on {HOST}:{port}" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        SmtpMailer(_settings(port)).send("amina@example.org", "through the command", "text")
        assert [m.subject for m in list_messages(directory)] == ["through the command"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()
        assert "mailbox stopped" in log.read_text()
        with pytest.raises(MailNotSent):
            SmtpMailer(_settings(port)).send("amina@example.org", "after", "text")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
