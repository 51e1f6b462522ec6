"""The e-mails the web app sends (docs/design.md §8.1): a sign-in link, in plain words, as text and HTML."""
from __future__ import annotations

from html import escape

from timecredits.mail import SmtpMailer


def send_sign_in_link(mailer: SmtpMailer, to: str, name: str, url: str) -> None:
    """Raises `timecredits.mail.MailNotSent` when the mail server does not take it."""
    text = (f"Hello {name},\n\nUse this link to sign in to timecredits:\n\n{url}\n\n"
            "It works once, for the next 15 minutes. If you did not ask to sign in, you can ignore this e-mail: "
            "nobody can sign in without the link.\n")
    html = (f"<p>Hello {escape(name)},</p><p><a href=\"{escape(url)}\">Sign in to timecredits</a></p>"
            "<p>The link works once, for the next 15 minutes. If you did not ask to sign in, you can ignore this "
            "e-mail: nobody can sign in without the link.</p>")
    mailer.send(to, "Your link to sign in to timecredits", text, html)
