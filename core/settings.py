"""Infrastructure settings: where the database, broker, LLM and embedder live.

One typed object, read from the environment and `.env`. Every default works with no services at
all (embedded PostgreSQL, in-process Celery worker, offline summarizer and embedder). Per-run
knobs (thresholds, window sizes) are graph config, not settings: nothing here silently overrides
a run's config. This module must not connect to anything; it only describes.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """All environment variables the project reads (documented in `.env.example`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str | None = Field(
        None, description="PostgreSQL with pgvector; unset: embedded server under AML_DATA_DIR"
    )
    aml_data_dir: Path = Field(Path(".data"), description="Embedded database and local state")
    database_pool_size: int = Field(
        10, ge=1, description="Most PostgreSQL connections in each process's pool"
    )
    celery_broker_url: str | None = Field(
        None, description="Broker for the worker fleet; unset: in-process worker"
    )
    celery_result_backend: str | None = Field(
        None, description="Result backend; unset: the broker when it is Redis"
    )
    celery_visibility_timeout: int = Field(
        1800, description="Seconds before Redis re-delivers an unacknowledged task"
    )
    redis_url: str | None = Field(
        None, description="Locks, leases and fleet-wide limits; unset: the broker when Redis"
    )
    openai_api_key: SecretStr | None = Field(None, description="Enables LLM summaries")
    openai_base_url: str | None = Field(None, description="Any OpenAI-compatible server")
    llm_model: str = Field("gpt-4o-mini", description="Chat model for summaries")
    embedding_model: str | None = Field(
        None, description="OpenAI embedding model; unset: offline all-MiniLM-L6-v2"
    )
    embedding_dimensions: int = Field(384, description="Vector size stored in pgvector")
    feed_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CIDRs that may be fetched although not public"
    )
    feed_max_bytes: int = Field(5_000_000, description="Cap on a feed's decoded size")
    feed_timeout_seconds: float = Field(20.0, description="Wall-clock deadline per fetch")
    llm_timeout_seconds: float = Field(60.0, description="Deadline of one LLM request")
    llm_max_retries: int = Field(2, description="Client retries for 429 and 5xx")
    llm_max_concurrency: int = Field(32, description="LLM calls in flight across the fleet")
    llm_requests_per_minute: int = Field(0, description="Fleet-wide request rate; 0: no cap")
    embed_batch_size: int = Field(32, description="Texts per embedding batch")
    ingest_interval_minutes: float = Field(15.0, description="Beat: feed ingestion period")
    digest_at: str = Field("07:00", description="Beat: daily digest time, HH:MM UTC")
    digest_webhook_url: str | None = Field(None, description="Slack-compatible webhook")
    feeds_file: Path = Field(
        Path("examples/feeds/feeds.txt"), description="Feed list used by Beat and run_daily"
    )
    embedded_worker_concurrency: int = Field(16, description="Threads of the in-process worker")
    digest_out_dir: Path = Field(Path("out"), description="Where Beat's daily run writes")

    @field_validator(
        "database_url", "celery_broker_url", "celery_result_backend", "redis_url",
        "openai_api_key", "openai_base_url", "embedding_model", "digest_webhook_url",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`VAR=` (as docker compose passes an unset variable) means unset, not empty."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("feed_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> list[str]:
        if value is None or value == "":
            return []
        items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[arg-type]
        nets = [str(i).strip() for i in items if str(i).strip()]
        for net in nets:
            ipaddress.ip_network(net, strict=False)  # raises a clear ValueError on a typo
        return nets

    @property
    def broker_is_redis(self) -> bool:
        return bool(
            self.celery_broker_url and self.celery_broker_url.startswith(("redis", "rediss"))
        )

    @property
    def effective_redis_url(self) -> str | None:
        """Redis for locks and limits: REDIS_URL, else the broker when it is Redis."""
        if self.redis_url:
            return self.redis_url
        return self.celery_broker_url if self.broker_is_redis else None

    @property
    def effective_result_backend(self) -> str | None:
        if self.celery_result_backend:
            return self.celery_result_backend
        return self.celery_broker_url if self.broker_is_redis else None

    @property
    def llm_enabled(self) -> bool:
        return self.openai_api_key is not None and bool(self.openai_api_key.get_secret_value())

    def modes(self) -> dict[str, str]:
        """What runs where, in words a user can check (no secrets)."""
        return {
            "database": f"external {redact_url(self.database_url)}"
            if self.database_url
            else f"embedded PostgreSQL+pgvector ({self.aml_data_dir}/pg)",
            "broker": f"fleet {redact_url(self.celery_broker_url)}"
            if self.celery_broker_url
            else "in-process worker (memory transport)",
            "llm": f"{self.llm_model} via {self.openai_base_url or 'OpenAI'}"
            if self.llm_enabled
            else "offline extractive summarizer",
            "embedder": f"{self.embedding_model} via {self.openai_base_url or 'OpenAI'}"
            if self.embedding_model
            else "offline all-MiniLM-L6-v2",
        }


def redact_url(url: str | None) -> str:
    """Drop any password from a URL before it is printed or logged."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call `get_settings.cache_clear()`)."""
    return Settings()
