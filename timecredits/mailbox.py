"""The development mailbox (docs/design.md §8.4): a real SMTP server on 127.0.0.1 that keeps every message it
receives as a file, and the functions that read them back for the admin's Mailbox page.

Each message is one file `<time>-<uuid>.eml` in one directory, exactly the bytes the client sent, after two
headers of the envelope (`X-MailFrom`, `X-RcptTo`): who was sent it, whatever the headers say. A file appears
whole or not at all (written under a temporary name, then renamed), so a reader never sees half a message.
"""
from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["HOST", "Mailbox", "StoredMessage", "free_port", "list_messages", "read_message", "running_mailbox",
           "store"]

#: Only this machine may deliver: the mailbox accepts mail for any address, from anyone who can connect.
HOST = "127.0.0.1"
#: The largest message kept; a sign-in link is a few kilobytes.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"
_NAME = re.compile(r"(?P<time>[0-9]{8}T[0-9]{12}Z)-(?P<uuid>[0-9a-f]{32})")


@dataclass(frozen=True)
class StoredMessage:
    """One received message, as the Mailbox page shows it."""

    id: str
    received_at: datetime
    sender: str
    to: tuple[str, ...]
    subject: str
    text: str | None
    html: str | None


class _Keeper:
    """aiosmtpd's handler: each message's DATA, written to `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        head = (f"X-MailFrom: {envelope.mail_from}\r\n"
                f"X-RcptTo: {', '.join(envelope.rcpt_tos)}\r\n").encode("utf-8", errors="replace")
        try:
            store(self.directory, head + content)
        except OSError as exc:
            return f"451 Requested action aborted: cannot keep the message ({exc.strerror or exc})"
        return "250 Message accepted for delivery"


def store(directory: Path, content: bytes, now: datetime | None = None) -> str:
    """Keep `content` as a new message in `directory`; its id. Temporary file, fsync, then rename."""
    directory.mkdir(parents=True, exist_ok=True)
    received = (now or datetime.now(UTC)).astimezone(UTC)
    message_id = f"{received.strftime(_TIME_FORMAT)}-{uuid.uuid4().hex}"
    temporary = directory / f".{message_id}.tmp"  # not `*.eml`: readers never list it
    with open(temporary, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, directory / f"{message_id}.eml")
    return message_id


class Mailbox:
    """The SMTP server on `HOST:port`, in a thread of its own; `start()`, then `stop()`."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_Keeper(directory), hostname=HOST, port=port,
                                      data_size_limit=MAX_MESSAGE_BYTES, enable_SMTPUTF8=True,
                                      ready_timeout=10.0)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@contextmanager
def running_mailbox(directory: Path, port: int) -> Iterator[Mailbox]:
    mailbox = Mailbox(directory, port)
    mailbox.start()
    try:
        yield mailbox
    finally:
        mailbox.stop()


def free_port(avoid: frozenset[int] = frozenset()) -> int:
    """A port on `HOST` free now and not among `avoid`."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding
        return None


def _parse(path: Path, name: re.Match[str]) -> StoredMessage:
    received_at = datetime.strptime(name["time"], _TIME_FORMAT).replace(tzinfo=UTC)
    with open(path, "rb") as file:
        message = BytesParser(EmailMessage, policy=policy.default).parse(file)
    recipients = tuple(address for _, address in getaddresses([str(message.get("X-RcptTo", ""))]) if address)
    if not recipients:
        recipients = tuple(address for _, address in getaddresses(message.get_all("To", [])) if address)
    return StoredMessage(
        id=name.string,
        received_at=received_at,
        sender=str(message.get("From", "")),
        to=recipients,
        subject=str(message.get("Subject", "")),
        text=_body(message, "plain"),
        html=_body(message, "html"),
    )


def _names(directory: Path) -> list[re.Match[str]]:
    try:
        files = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [name for file in files if file.endswith(".eml") and (name := _NAME.fullmatch(file.removesuffix(".eml")))]


def list_messages(directory: Path, limit: int | None = None) -> list[StoredMessage]:
    """Every message in `directory` (at most `limit`), newest first; none when the directory does not exist."""
    found: list[StoredMessage] = []
    for name in sorted(_names(directory), key=lambda name: name.string, reverse=True):  # time first: newest first
        if limit is not None and len(found) >= limit:
            break
        try:
            found.append(_parse(directory / f"{name.string}.eml", name))
        except FileNotFoundError:
            continue  # removed since the listing
    return found


def read_message(directory: Path, message_id: str) -> StoredMessage | None:
    """The message with this id, or None: unknown, or not an id at all (a page passes what a URL said)."""
    name = _NAME.fullmatch(message_id)
    if name is None:
        return None
    try:
        return _parse(directory / f"{message_id}.eml", name)
    except FileNotFoundError:
        return None
