"""Settings from the environment (docs/design.md §6), read once per process."""
from __future__ import annotations

import ipaddress
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

#: The shortest `TIMECREDITS_ADMIN_TOKEN` accepted: 32 characters, as a generated token is 46.
MIN_ADMIN_TOKEN_LENGTH = 32
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg2"}
#: What a volunteer's no-show costs them (docs/design.md §5.11).
NoShowCost = Literal["nothing", "full"]


def sqlalchemy_database_url(url: str, name: str = "DATABASE_URL") -> str:
    """`DATABASE_URL` as SQLAlchemy's psycopg2 URL, whichever way it was written (docs/design.md §6).

    Managed providers hand out `postgres://…` or `postgresql://…`, often with `?sslmode=require`; SQLAlchemy
    wants `postgresql+psycopg2://…`. Query parameters (`sslmode` among them) pass through to libpq as given.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _POSTGRES_SCHEMES:
        given = f", not {scheme}://" if sep else " (it names no scheme)"  # never the rest: it may hold a password
        raise ValueError(f"{name} must be a postgresql:// (or postgres://) URL{given}")
    normalised = f"postgresql+psycopg2://{rest}"
    make_url(normalised)  # refuses a URL SQLAlchemy cannot read, here rather than at the first connection
    return normalised


class Settings(BaseSettings):
    """Every knob an operator may turn; unset services mean 'start the embedded one'."""

    # Errors never echo a value: it may be a secret (an admin token, a database password).
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True, hide_input_in_errors=True)

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    #: The runtime role's URL, for `migrate` and `up` (docs/design.md §6.1); unset, derived from DATABASE_URL.
    database_app_url: str | None = Field(default=None, alias="DATABASE_APP_URL")
    kafka_bootstrap_servers: str | None = Field(default=None, alias="KAFKA_BOOTSTRAP_SERVERS")
    admin_token: str | None = Field(default=None, alias="TIMECREDITS_ADMIN_TOKEN")
    data_dir: Path = Field(default=Path(".data"), alias="TIMECREDITS_DATA_DIR")
    api_host: str = Field(default="127.0.0.1", alias="TIMECREDITS_API_HOST")
    api_port: int = Field(default=8000, alias="TIMECREDITS_API_PORT")
    topic_partitions: int = Field(default=4, ge=1, alias="TIMECREDITS_TOPIC_PARTITIONS")
    topic_prefix: str = Field(default="", alias="TIMECREDITS_TOPIC_PREFIX")
    worker_session_timeout_s: float = Field(default=10.0, gt=0, alias="TIMECREDITS_WORKER_SESSION_TIMEOUT")
    #: How long a batch's work in a thread may take before the batch counts as failed (consumers.failures).
    worker_thread_timeout_s: float = Field(default=120.0, gt=0, alias="TIMECREDITS_WORKER_THREAD_TIMEOUT")
    batch_within_s: float = Field(default=0.2, gt=0, alias="TIMECREDITS_BATCH_WITHIN")
    publish_timeout_s: float = Field(default=5.0, gt=0, alias="TIMECREDITS_PUBLISH_TIMEOUT")
    ledger_batch_size: int = Field(default=1000, ge=1, alias="TIMECREDITS_BATCH_SIZE")
    #: The largest request body the API reads (docs/design.md §5.5); there is no upload endpoint.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, alias="TIMECREDITS_MAX_BODY_BYTES")
    #: The largest spreadsheet the web app's upload takes (docs/design.md §5.5, §8.3).
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, alias="TIMECREDITS_MAX_UPLOAD_BYTES")
    #: Slow clients (docs/design.md §5.5): seconds a request's headers may take to arrive, the most bytes they may
    #: be, seconds its body may take after them, seconds an idle keep-alive connection is kept, and the most
    #: connections an API process holds (beyond it a request is answered 503 at once).
    http_header_timeout_s: float = Field(default=10.0, gt=0, alias="TIMECREDITS_HTTP_HEADER_TIMEOUT")
    http_max_header_bytes: int = Field(default=64 * 1024, ge=1024, alias="TIMECREDITS_HTTP_MAX_HEADER_BYTES")
    http_body_timeout_s: float = Field(default=60.0, gt=0, alias="TIMECREDITS_HTTP_BODY_TIMEOUT")
    # Longer than clients keep idle connections (httpx 5 s, proxies often 60 s): with uvicorn's 5 s default, a
    # client reusing a connection as the server closed it got a ReadError under the load test.
    http_keep_alive_timeout_s: float = Field(default=65.0, gt=0, alias="TIMECREDITS_HTTP_KEEP_ALIVE_TIMEOUT")
    http_max_connections: int = Field(default=1000, ge=1, alias="TIMECREDITS_HTTP_MAX_CONNECTIONS")
    #: Writes (POST, PUT, PATCH, DELETE) a second, and the burst, per credential and per client address.
    rate_writes_per_s: float = Field(default=5000.0, gt=0, alias="TIMECREDITS_RATE_WRITES_PER_S")
    rate_writes_burst: int = Field(default=10_000, ge=1, alias="TIMECREDITS_RATE_WRITES_BURST")
    #: Refused authentications (401s) a minute, and the burst, per client address.
    rate_auth_failures_per_min: float = Field(default=600.0, gt=0, alias="TIMECREDITS_RATE_AUTH_FAILURES_PER_MIN")
    rate_auth_failures_burst: int = Field(default=100, ge=1, alias="TIMECREDITS_RATE_AUTH_FAILURES_BURST")
    #: Hours dated more than this many days back are refused unless an admin logs them (docs/design.md §5.6).
    max_days_back: int = Field(default=92, ge=0, le=3650, alias="TIMECREDITS_MAX_DAYS_BACK")
    #: Wrong spend codes one actor may type in 15 minutes before being refused (docs/design.md §5.6).
    spend_code_guesses: int = Field(default=10, ge=1, alias="TIMECREDITS_SPEND_CODE_GUESSES")
    #: How long a place offered from a waiting list is held for its volunteer (docs/design.md §5.8).
    waitlist_offer_hours: float = Field(default=24.0, gt=0, le=24 * 30, alias="TIMECREDITS_WAITLIST_OFFER_HOURS")
    #: How often `timecredits up` runs the offer job, in seconds.
    waitlist_interval_s: float = Field(default=60.0, gt=0, alias="TIMECREDITS_WAITLIST_INTERVAL")
    #: Hours after its session (or, undated, after the booking) that a booking neither attended nor cancelled
    #: gives its held credits back to the volunteer (docs/design.md §5.11).
    hold_release_hours: float = Field(default=72.0, gt=0, le=24 * 365, alias="TIMECREDITS_HOLD_RELEASE_HOURS")
    #: How often `timecredits up` runs the hold-release job, in seconds.
    hold_release_interval_s: float = Field(default=300.0, gt=0, alias="TIMECREDITS_HOLD_RELEASE_INTERVAL")
    #: How long the retention sweep keeps what is needed only for a while (docs/design.md §5.15), in days: an
    #: idempotency key after it was made, a session and a sign-in link after they ended, a request for a link or
    #: a wrong card code, an unused spend code after it expired, a wrong spend code after it was typed.
    keep_idempotency_keys_days: float = Field(default=7.0, ge=1, le=3650, alias="TIMECREDITS_KEEP_IDEMPOTENCY_KEYS_DAYS")
    keep_sessions_days: float = Field(default=30.0, gt=0, le=3650, alias="TIMECREDITS_KEEP_SESSIONS_DAYS")
    keep_sign_in_links_days: float = Field(default=7.0, gt=0, le=3650, alias="TIMECREDITS_KEEP_SIGN_IN_LINKS_DAYS")
    keep_sign_in_requests_days: float = Field(default=1.0, ge=1, le=3650,
                                              alias="TIMECREDITS_KEEP_SIGN_IN_REQUESTS_DAYS")
    keep_spend_codes_days: float = Field(default=30.0, gt=0, le=3650, alias="TIMECREDITS_KEEP_SPEND_CODES_DAYS")
    keep_spend_code_failures_days: float = Field(default=1.0, ge=1, le=3650,
                                                 alias="TIMECREDITS_KEEP_SPEND_CODE_FAILURES_DAYS")
    #: How often `timecredits up` runs the retention sweep, in seconds.
    sweep_interval_s: float = Field(default=3600.0, gt=0, alias="TIMECREDITS_SWEEP_INTERVAL")
    #: How long `timecredits up` waits after one run of verify has ended before it starts the next, in seconds
    #: (docs/design.md §3.3).
    verify_interval_s: float = Field(default=3600.0, gt=0, alias="TIMECREDITS_VERIFY_INTERVAL")
    #: Where verify writes its last result and the API reads it for its metrics; unset, the API exports none
    #: (`up` sets it for its API to `DATA_DIR/verify-status.json`).
    verify_status_file: Path | None = Field(default=None, alias="TIMECREDITS_VERIFY_STATUS_FILE")
    #: What a no-show costs the volunteer: `nothing` (the credits go back) or `full` (they go to the partner).
    no_show_cost: NoShowCost = Field(default="nothing", alias="TIMECREDITS_NO_SHOW_COST")
    #: The mail server that sends sign-in links (docs/design.md §8.1); unset, `up` starts a development
    #: mailbox and points the API at it (§8.4).
    smtp_host: str | None = Field(default=None, alias="TIMECREDITS_SMTP_HOST")
    smtp_port: int = Field(default=587, ge=1, le=65535, alias="TIMECREDITS_SMTP_PORT")
    smtp_username: str | None = Field(default=None, alias="TIMECREDITS_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(default=None, alias="TIMECREDITS_SMTP_PASSWORD")
    #: STARTTLS before anything else is said; false only for a server on this machine (the development mailbox).
    smtp_starttls: bool = Field(default=True, alias="TIMECREDITS_SMTP_STARTTLS")
    #: Seconds to wait for the mail server (connect, and each answer) before the mail counts as not sent.
    smtp_timeout_s: float = Field(default=10.0, gt=0, le=300, alias="TIMECREDITS_SMTP_TIMEOUT")
    mail_from: str = Field(default="timecredits <no-reply@localhost>", alias="TIMECREDITS_MAIL_FROM")
    #: Where the development mailbox keeps what it received, for the admin's Mailbox page (docs/design.md §8.4).
    dev_mailbox_dir: Path | None = Field(default=None, alias="TIMECREDITS_DEV_MAILBOX_DIR")

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        return sqlalchemy_database_url(value) if value else None

    @field_validator("database_app_url")
    @classmethod
    def _normalise_database_app_url(cls, value: str | None) -> str | None:
        return sqlalchemy_database_url(value, "DATABASE_APP_URL") if value else None

    @field_validator("admin_token")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if not value:
            return None  # unset, or set empty (as compose does by default): no bootstrap admin
        if len(value) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"TIMECREDITS_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters "
                             f"(this one has {len(value)}); `timecredits tokens create --role admin` makes one")
        return value

    @field_validator("smtp_host", "smtp_username")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None  # compose sets unused variables empty

    @field_validator("smtp_password")
    @classmethod
    def _empty_password_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("mail_from")
    @classmethod
    def _an_address(cls, value: str) -> str:
        _, address = parseaddr(value)
        if "@" not in address or any(c in value for c in "\r\n"):
            raise ValueError("TIMECREDITS_MAIL_FROM must be an address, such as "
                             "'Timecredits <no-reply@council.example>'")
        return value

    @model_validator(mode="after")
    def _credentials_only_over_tls(self) -> Self:
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("TIMECREDITS_SMTP_USERNAME and TIMECREDITS_SMTP_PASSWORD are set together, or neither")
        if self.smtp_username is not None and not self.smtp_starttls and not _is_loopback(self.smtp_host):
            # Without STARTTLS the password would cross the network in clear (AUTH PLAIN is base64, not secret).
            raise ValueError("TIMECREDITS_SMTP_STARTTLS=false would send the SMTP password in clear to "
                             f"{self.smtp_host}; keep STARTTLS on for a mail server on another machine")
        return self


def _is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
