"""Sending e-mail over SMTP (docs/design.md §8.1: sign-in links; §8.4: the development mailbox).

Standard library only, and no web framework: the web app and the tests send through the same class.
"""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from timecredits.settings import Settings

__all__ = ["MailNotSent", "SmtpMailer"]


class MailNotSent(Exception):
    """A message could not be handed to the mail server; the message says why in plain words, never a password."""


class SmtpMailer:
    """Hands one message at a time to the configured SMTP server (`TIMECREDITS_SMTP_*`).

    A connection a message: sign-in links are few (at most 5 an address in 15 minutes, §8.1), and a fresh
    connection cannot be one the server closed while it sat idle.
    """

    def __init__(self, settings: Settings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.starttls = settings.smtp_starttls
        self.timeout_s = settings.smtp_timeout_s
        self.mail_from = settings.mail_from
        self._username = settings.smtp_username
        self._password = settings.smtp_password

    def __repr__(self) -> str:
        return f"SmtpMailer({self.host}:{self.port}, starttls={self.starttls})"

    def message(self, to: str, subject: str, text: str, html: str | None = None) -> EmailMessage:
        """The message `send` would send: plain text, and an HTML alternative when given."""
        if any(c in value for value in (to, subject) for c in "\r\n"):
            raise MailNotSent("an address or subject holds a line break")  # it would start a header of its own
        if "@" not in parseaddr(to)[1]:
            raise MailNotSent(f"{to!r} is not an e-mail address")
        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain=parseaddr(self.mail_from)[1].rpartition("@")[2] or None)
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
        return message

    def send(self, to: str, subject: str, text: str, html: str | None = None) -> str:
        """Send one message to one address; its Message-ID. Raises `MailNotSent` on any failure."""
        message = self.message(to, subject, text, html)
        self.send_message(message)
        return str(message["Message-ID"])

    def send_message(self, message: EmailMessage) -> None:
        if self.host is None:
            raise MailNotSent("no mail server is configured (TIMECREDITS_SMTP_HOST is not set)")
        where = f"{self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username is not None and self._password is not None:
                    smtp.login(self._username, self._password.get_secret_value())
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise MailNotSent(f"the mail server {where} refused the username and password "
                              f"(TIMECREDITS_SMTP_USERNAME, TIMECREDITS_SMTP_PASSWORD): {self._said(exc)}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise MailNotSent(f"the mail server {where} does not offer what was asked of it (STARTTLS or "
                              f"login): {self._scrub(str(exc))}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            said = "; ".join(f"{rcpt}: {code} {self._decode(reply)}" for rcpt, (code, reply) in exc.recipients.items())
            raise MailNotSent(f"the mail server {where} refused the recipient: {said}") from exc
        except smtplib.SMTPResponseException as exc:
            raise MailNotSent(f"the mail server {where} refused the message: {self._said(exc)}") from exc
        except smtplib.SMTPServerDisconnected as exc:
            if isinstance(exc.__context__, TimeoutError):  # smtplib turns a read that timed out into this
                raise MailNotSent(f"the mail server {where} did not answer within {self.timeout_s:g} s") from exc
            raise MailNotSent(f"the mail server {where} closed the connection before the message was sent") from exc
        except smtplib.SMTPException as exc:  # the rest of smtplib's; before OSError, their base
            raise MailNotSent(f"the mail server {where} did not take the message: {self._scrub(str(exc))}") from exc
        except ssl.SSLError as exc:
            raise MailNotSent(f"TLS with the mail server {where} failed: {exc.reason or exc}") from exc
        except TimeoutError as exc:
            raise MailNotSent(f"the mail server {where} did not answer within {self.timeout_s:g} s") from exc
        except OSError as exc:  # refused, unreachable, unknown host
            raise MailNotSent(f"could not reach the mail server {where}: {exc.strerror or exc}") from exc

    def _said(self, exc: smtplib.SMTPResponseException) -> str:
        return f"{exc.smtp_code} {self._decode(exc.smtp_error)}"

    def _decode(self, reply: bytes | str) -> str:
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        """A server's words, with the password taken out should a server ever echo it."""
        if self._password is not None and self._password.get_secret_value():
            text = text.replace(self._password.get_secret_value(), "********")
        return text
