"""Settings validation: managed-provider database URLs, and a bootstrap admin token long enough to be a secret."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.reads import asyncpg_connect_args
from timecredits.settings import Settings, sqlalchemy_database_url


@pytest.mark.parametrize(("given", "expected"), [
    ("postgres://u:p@db.example.com:5432/tc", "postgresql+psycopg2://u:p@db.example.com:5432/tc"),
    ("postgresql://u:p@db.example.com:5432/tc?sslmode=require",
     "postgresql+psycopg2://u:p@db.example.com:5432/tc?sslmode=require"),
    ("postgresql+psycopg2://u@localhost/tc", "postgresql+psycopg2://u@localhost/tc"),
    ("POSTGRES://u@localhost/tc", "postgresql+psycopg2://u@localhost/tc"),
])
def test_a_managed_provider_url_becomes_the_psycopg2_url(given: str, expected: str) -> None:
    assert sqlalchemy_database_url(given) == expected


@pytest.mark.parametrize("given", ["mysql://u@h/db", "localhost:5432/tc", "sqlite:///x.db"])
def test_a_url_that_is_not_postgresql_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        sqlalchemy_database_url(given)


def test_settings_normalise_database_url_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p%40ss@db:6543/tc?sslmode=require")
    assert Settings().database_url == "postgresql+psycopg2://u:p%40ss@db:6543/tc?sslmode=require"


def test_the_runtime_role_url_is_normalised_and_refused_by_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_APP_URL", "postgres://timecredits_app:s3cret@db/tc?sslmode=require")
    assert Settings().database_app_url == "postgresql+psycopg2://timecredits_app:s3cret@db/tc?sslmode=require"
    monkeypatch.setenv("DATABASE_APP_URL", "mysql://timecredits_app:s3cret@db/tc")
    with pytest.raises(ValidationError, match="DATABASE_APP_URL must be a postgresql://") as refused:
        Settings()
    assert "s3cret" not in str(refused.value)
    monkeypatch.delenv("DATABASE_APP_URL")
    assert Settings().database_app_url is None


@pytest.mark.parametrize(("mode", "ssl"), [
    ("disable", "disable"), ("allow", "allow"), ("prefer", "prefer"), ("require", "require"),
    ("verify-ca", "verify-ca"), ("verify-full", "verify-full"),
])
def test_sslmode_becomes_asyncpgs_ssl_and_leaves_the_url(mode: str, ssl: str) -> None:
    dsn, chosen = asyncpg_connect_args(f"postgresql+psycopg2://u:p%40ss@db:6543/tc?sslmode={mode}&application_name=x")
    assert chosen == ssl
    assert dsn == "postgresql://u:p%40ss@db:6543/tc?application_name=x"


def test_without_sslmode_asyncpg_keeps_its_default() -> None:
    assert asyncpg_connect_args("postgresql+psycopg2://u@db/tc") == ("postgresql://u@db/tc", None)


def test_an_unknown_sslmode_is_refused() -> None:
    with pytest.raises(ValueError, match="sslmode must be one of"):
        asyncpg_connect_args("postgresql+psycopg2://u@db/tc?sslmode=sometimes")


def test_a_short_admin_token_is_refused_with_a_plain_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMECREDITS_ADMIN_TOKEN", "secret-but-short")
    with pytest.raises(ValidationError, match="at least 32 characters") as refused:
        Settings()
    assert "secret-but-short" not in str(refused.value)  # the refusal does not echo the secret


def test_an_admin_token_of_32_characters_is_accepted_and_an_empty_one_means_none(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMECREDITS_ADMIN_TOKEN", "x" * 32)
    assert Settings().admin_token == "x" * 32
    monkeypatch.setenv("TIMECREDITS_ADMIN_TOKEN", "")
    assert Settings().admin_token is None


# --- mail (docs/design.md §8.1, §8.4) ---------------------------------------------------------------------------

_MAIL_VARIABLES = ("TIMECREDITS_SMTP_HOST", "TIMECREDITS_SMTP_PORT", "TIMECREDITS_SMTP_USERNAME",
                   "TIMECREDITS_SMTP_PASSWORD", "TIMECREDITS_SMTP_STARTTLS", "TIMECREDITS_SMTP_TIMEOUT",
                   "TIMECREDITS_MAIL_FROM", "TIMECREDITS_DEV_MAILBOX_DIR")


@pytest.fixture()
def mail_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _MAIL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_mail_defaults_are_no_server_port_587_and_starttls(mail_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.smtp_host is None and settings.smtp_username is None and settings.smtp_password is None
    assert (settings.smtp_port, settings.smtp_starttls, settings.smtp_timeout_s) == (587, True, 10.0)
    assert settings.mail_from == "timecredits <no-reply@localhost>"
    assert settings.dev_mailbox_dir is None


def test_a_council_mail_server_is_read_from_the_environment(mail_env: pytest.MonkeyPatch) -> None:
    mail_env.setenv("TIMECREDITS_SMTP_HOST", "smtp.council.example")
    mail_env.setenv("TIMECREDITS_SMTP_PORT", "2587")
    mail_env.setenv("TIMECREDITS_SMTP_USERNAME", "timecredits")
    mail_env.setenv("TIMECREDITS_SMTP_PASSWORD", "s3cret-mail-password")
    mail_env.setenv("TIMECREDITS_MAIL_FROM", "Hackney Time Credits <no-reply@hackney.example>")
    settings = Settings()
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_username) == ("smtp.council.example", 2587,
                                                                               "timecredits")
    assert settings.smtp_password is not None and settings.smtp_password.get_secret_value() == "s3cret-mail-password"
    assert "s3cret-mail-password" not in repr(settings)  # a SecretStr: never in a log line


def test_the_development_mailbox_settings_are_read_from_the_environment(mail_env: pytest.MonkeyPatch) -> None:
    mail_env.setenv("TIMECREDITS_SMTP_HOST", "127.0.0.1")
    mail_env.setenv("TIMECREDITS_SMTP_PORT", "8025")
    mail_env.setenv("TIMECREDITS_SMTP_STARTTLS", "false")
    mail_env.setenv("TIMECREDITS_SMTP_USERNAME", "")  # as `up` gives them: empty is unset
    mail_env.setenv("TIMECREDITS_SMTP_PASSWORD", "")
    mail_env.setenv("TIMECREDITS_DEV_MAILBOX_DIR", "/tmp/tc/mailbox")
    settings = Settings()
    assert (settings.smtp_starttls, settings.smtp_username, settings.smtp_password) == (False, None, None)
    assert str(settings.dev_mailbox_dir) == "/tmp/tc/mailbox"


@pytest.mark.parametrize(("name", "value"), [
    ("TIMECREDITS_SMTP_PORT", "0"), ("TIMECREDITS_SMTP_PORT", "65536"), ("TIMECREDITS_SMTP_TIMEOUT", "0"),
    ("TIMECREDITS_MAIL_FROM", "no address here"), ("TIMECREDITS_MAIL_FROM", "a@b.example\r\nBcc: c@d.example"),
])
def test_a_bad_mail_setting_is_refused(mail_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    mail_env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_a_username_needs_its_password(mail_env: pytest.MonkeyPatch) -> None:
    mail_env.setenv("TIMECREDITS_SMTP_HOST", "smtp.council.example")
    mail_env.setenv("TIMECREDITS_SMTP_USERNAME", "timecredits")
    with pytest.raises(ValidationError, match="set together"):
        Settings()


def test_a_password_is_never_sent_in_clear_to_another_machine(mail_env: pytest.MonkeyPatch) -> None:
    mail_env.setenv("TIMECREDITS_SMTP_HOST", "smtp.council.example")
    mail_env.setenv("TIMECREDITS_SMTP_USERNAME", "timecredits")
    mail_env.setenv("TIMECREDITS_SMTP_PASSWORD", "s3cret-mail-password")
    mail_env.setenv("TIMECREDITS_SMTP_STARTTLS", "false")
    with pytest.raises(ValidationError, match="in clear") as refused:
        Settings()
    assert "s3cret-mail-password" not in str(refused.value)
    mail_env.setenv("TIMECREDITS_SMTP_HOST", "127.0.0.1")  # a relay on this machine
    assert Settings().smtp_starttls is False


# --- retention (docs/design.md §5.15) ---------------------------------------------------------------------------

_RETENTION_VARIABLES = ("TIMECREDITS_KEEP_IDEMPOTENCY_KEYS_DAYS", "TIMECREDITS_KEEP_SESSIONS_DAYS",
                        "TIMECREDITS_KEEP_SIGN_IN_LINKS_DAYS", "TIMECREDITS_KEEP_SIGN_IN_REQUESTS_DAYS",
                        "TIMECREDITS_KEEP_SPEND_CODES_DAYS", "TIMECREDITS_KEEP_SPEND_CODE_FAILURES_DAYS",
                        "TIMECREDITS_SWEEP_INTERVAL")


@pytest.fixture()
def retention_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _RETENTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_retention_defaults_are_the_documented_ones(retention_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert (s.keep_idempotency_keys_days, s.keep_sessions_days, s.keep_sign_in_links_days,
            s.keep_sign_in_requests_days, s.keep_spend_codes_days, s.keep_spend_code_failures_days,
            s.sweep_interval_s) == (7, 30, 7, 1, 30, 1, 3600)
    retention_env.setenv("TIMECREDITS_KEEP_SESSIONS_DAYS", "90")
    assert Settings().keep_sessions_days == 90


@pytest.mark.parametrize(("name", "value"), [
    ("TIMECREDITS_KEEP_IDEMPOTENCY_KEYS_DAYS", "0.5"),  # a retry a few hours later must still find its key
    ("TIMECREDITS_KEEP_SIGN_IN_REQUESTS_DAYS", "0"),  # the limits on asking for links look back at them
    ("TIMECREDITS_KEEP_SPEND_CODE_FAILURES_DAYS", "0.1"), ("TIMECREDITS_KEEP_SESSIONS_DAYS", "0"),
    ("TIMECREDITS_KEEP_SPEND_CODES_DAYS", "-1"), ("TIMECREDITS_SWEEP_INTERVAL", "0"),
])
def test_a_retention_too_short_to_keep_the_rules_working_is_refused(retention_env: pytest.MonkeyPatch, name: str,
                                                                     value: str) -> None:
    retention_env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
