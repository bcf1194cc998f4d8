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

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core import redact
from core.redact import DEFAULT_SECRET_QUERY_PARAMS, redact_dsn
from core.redact import redact_url as redact_url  # the one redaction; kept importable here

DEFAULT_USER_AGENT = "AgenticMediaLab/0.1 (+https://github.com/agentic-media-lab/agentic-media-lab)"


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
    user_agent: str = Field(
        DEFAULT_USER_AGENT, description="User-Agent of every fetch (feeds, pages, robots.txt)"
    )
    fetch_full_text: bool = Field(
        True, description="Fetch the article's page when its feed carries only a teaser"
    )
    fulltext_min_words: int = Field(50, description="Feed text shorter than this is a teaser")
    page_max_per_host: int = Field(2, description="Page requests at once per host, fleet-wide")
    page_max_bytes: int = Field(3_000_000, description="Cap on a page's decoded size")
    page_timeout_seconds: float = Field(10.0, description="Wall-clock deadline per page fetch")
    llm_timeout_seconds: float = Field(60.0, description="Deadline of one LLM request")
    llm_max_retries: int = Field(2, description="Client retries for 429 and 5xx")
    llm_max_input_tokens: int = Field(
        4000, description="Cap on the article text sent to the LLM per request (tokens)"
    )
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
    secret_query_params: str = Field(
        DEFAULT_SECRET_QUERY_PARAMS,
        description="URL query parameters whose values are masked wherever a URL is shown",
    )

    @field_validator(
        "database_url", "celery_broker_url", "celery_result_backend", "redis_url",
        "openai_api_key", "openai_base_url", "embedding_model", "digest_webhook_url",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`VAR=` (as docker compose passes an unset variable) means unset, not empty."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("user_agent", mode="before")
    @classmethod
    def _user_agent_is_one_line(cls, value: object) -> object:
        """Blank means the default; a header value may not span lines."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return DEFAULT_USER_AGENT
        if isinstance(value, str) and any(c in value for c in "\r\n"):
            raise ValueError("USER_AGENT must be one line, e.g. Name/1.0 (+https://contact.url)")
        return value.strip() if isinstance(value, str) else value

    @field_validator("fetch_full_text", mode="before")
    @classmethod
    def _blank_is_on(cls, value: object) -> object:
        """`FETCH_FULL_TEXT=` keeps the default (on); on/off/true/false/1/0 parse as usual."""
        return True if isinstance(value, str) and not value.strip() else value

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
        """What runs where, in words a user can check (no secrets: see `core.redact`)."""
        llm_via = redact_url(self.openai_base_url) if self.openai_base_url else "OpenAI"
        return {
            "database": f"external {redact_dsn(self.database_url)}"
            if self.database_url
            else f"embedded PostgreSQL+pgvector ({self.aml_data_dir}/pg)",
            "broker": f"fleet {redact_dsn(self.celery_broker_url)}"
            if self.celery_broker_url
            else "in-process worker (memory transport)",
            "llm": f"{self.llm_model} via {llm_via}"
            if self.llm_enabled
            else "offline extractive summarizer",
            "embedder": f"{self.embedding_model} via {llm_via}"
            if self.embedding_model
            else "offline all-MiniLM-L6-v2",
        }

    def known_secrets(self) -> list[str]:
        """Every secret value the settings hold, for `core.redact.redact_text`: the API key,
        the webhook URL, and the passwords (and secret query values) of every service URL."""
        found: list[str] = []
        if self.openai_api_key is not None:
            found.append(self.openai_api_key.get_secret_value())
        if self.digest_webhook_url:
            found.append(self.digest_webhook_url)
        for url in (self.database_url, self.celery_broker_url, self.celery_result_backend,
                    self.redis_url, self.openai_base_url):  # fmt: skip
            if url and "://" in url:
                found += redact.url_secrets(url)
            elif url:  # key=value DSN
                found += [m.group(3).strip("'") for m in redact.DSN_PASSWORD.finditer(url)]
        return [s for s in found if s]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call `get_settings.cache_clear()`).

    Also tells `core.redact` which query parameters and values are secret in this process.
    """
    settings = Settings()
    redact.configure(settings.secret_query_params, settings.known_secrets())
    return settings
