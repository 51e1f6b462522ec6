"""Settings from the environment (docs/design.md §6), read once per process."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob an operator may turn; unset services mean 'start the embedded one'."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
