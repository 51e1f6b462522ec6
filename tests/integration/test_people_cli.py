"""`timecredits people add` and `people sign-in-link` against real PostgreSQL: the first admin of the web app is
added from the command line, and the link printed signs them in once (docs/design.md §8.1)."""
from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import Engine

from web import people


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "TIMECREDITS_", "KAFKA_"))}
    return subprocess.run([sys.executable, "-m", "timecredits.cli", "people", *args],
                          env={**clean, "DATABASE_URL": database_url, "COLUMNS": "300"},
                          capture_output=True, text=True, timeout=120)


def test_the_first_admin_is_added_and_gets_a_link_that_signs_them_in_once(database_url: str,
                                                                           engine: Engine) -> None:
    added = _cli(database_url, "add", "--name", "Ada Admin", "--role", "admin", "--email", "Ada@Council.example")
    assert added.returncode == 0, added.stderr
    with engine.connect() as conn:
        ada = people.person_by_email(conn, "ada@council.example")
    assert ada is not None and str(ada.id) == added.stdout.strip() and ada.role is people.PersonRole.ADMIN
    link = _cli(database_url, "sign-in-link", "ada@council.example", "--base-url", "https://credits.example")
    assert link.returncode == 0, link.stderr
    url = link.stdout.strip()
    assert url.startswith("https://credits.example/app/sign-in/link/")
    token = url.rsplit("/", 1)[1]
    assert people.use_link(engine, token) == ada
    assert people.use_link(engine, token) is None  # once


def test_a_bad_role_or_an_unknown_address_is_refused_in_words(database_url: str) -> None:
    bad = _cli(database_url, "add", "--name", "X", "--role", "boss")
    assert bad.returncode == 2 and "is not a role" in bad.stdout + bad.stderr
    staff_without_org = _cli(database_url, "add", "--name", "Y", "--role", "coordinator", "--email", "y@x.example")
    assert staff_without_org.returncode == 1 and "could not add them" in staff_without_org.stdout
    nobody = _cli(database_url, "sign-in-link", "nobody@x.example")
    assert nobody.returncode == 1 and "nobody who may sign in" in nobody.stdout
