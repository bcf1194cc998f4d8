"""Real services for the tests: Redis, PostgreSQL + pgvector, an OpenAI-compatible server, workers.

Before collection (so `tasks.app` is configured for them) this starts a `redis-server` on a free
port (unless REDIS_URL names one), an embedded PostgreSQL 16 + pgvector from `pgserver` in a temp
directory, and the loopback LLM server, and points the settings at them. Fixtures then give each
test a clean database and, on demand, a real Celery worker process. Everything started here is
stopped here, by pid; the machine's own services are never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_started: dict[str, object] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(
    port: int | None = None, extra: list[str] | None = None
) -> tuple[subprocess.Popen, str]:
    """A private redis-server on loopback (no persistence unless `extra` asks for it)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.exit("redis-server not found: install Debian's redis-server (.ci/run does)", 2)
    port = port or free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         *(extra or [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
            return proc, url
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") or "services" in _started:
        return
    _started["services"] = True
    tmp = Path(tempfile.mkdtemp(prefix="aml-tests-"))
    _started["tmp"] = tmp
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        proc, redis_url = start_redis()
        _started["redis"] = proc
    import pgserver

    server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    _started["pg"] = server
    from tests.llm_server import LLMServer

    llm = LLMServer().start()
    _started["llm"] = llm
    os.environ.update(
        {
            "CELERY_BROKER_URL": redis_url,
            "CELERY_RESULT_BACKEND": redis_url,
            "REDIS_URL": redis_url,
            "DATABASE_URL": server.get_uri(),
            "AML_DATA_DIR": str(tmp / "data"),
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_BASE_URL": llm.base_url,
            "LLM_MODEL": "test-model",
            "LLM_MAX_RETRIES": "1",
            "LLM_TIMEOUT_SECONDS": "3",
            # The test feed server listens on 127.0.0.1; 127.0.0.2, ::1 and the rest stay refused.
            "FEED_ALLOWED_NETWORKS": "127.0.0.1/32",
            "HF_HUB_OFFLINE": "1",
            # Feed items in tests carry their text; a test of full text turns this on for a
            # loopback site, so no test resolves a name beyond loopback.
            "FETCH_FULL_TEXT": "off",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    os.environ.pop("EMBEDDING_MODEL", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    for proc in list(_workers):
        stop_process(proc)
    if "llm" in _started:
        _started.pop("llm").stop()  # type: ignore[attr-defined]
    if "redis" in _started:
        stop_process(_started.pop("redis"))  # type: ignore[arg-type]
    if "pg" in _started:
        server = _started.pop("pg")
        try:
            server.cleanup()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
    tmp = _started.pop("tmp", None)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


def stop_process(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM a process this session started (by pid), then SIGKILL if it lingers."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    _workers.discard(proc)


_workers: set[subprocess.Popen] = set()


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    """URLs of the services this session started."""
    return {
        "redis": os.environ["REDIS_URL"],
        "database": os.environ["DATABASE_URL"],
        "llm": os.environ["OPENAI_BASE_URL"],
    }


@pytest.fixture(scope="session")
def llm_server():
    """The session's loopback OpenAI-compatible server (reset before each use)."""
    server = _started["llm"]
    server.reset()  # type: ignore[attr-defined]
    return server


def truncate_all(conn) -> None:  # noqa: ANN001 - a psycopg connection
    """Empty every table the migrations made (the migration record and the checkpointer's
    tables are kept)."""
    from vectorstore.migrations import app_tables

    conn.execute(f"TRUNCATE {', '.join(app_tables(conn))} RESTART IDENTITY CASCADE")


@pytest.fixture
def db():
    """The database, emptied before the test (workers share it)."""
    from vectorstore import get_db

    database = get_db()
    with database.connection() as conn:
        truncate_all(conn)
    return database


def start_worker_process(
    queues: str = "ingest,llm,embed,analyze,publish",
    *,
    pool: str = "threads",
    concurrency: int = 8,
    env: dict[str, str] | None = None,
    name: str | None = None,
    logfile: Path | None = None,
    extra_args: list[str] | None = None,
    app_module: str = "tasks",
    control_app=None,  # noqa: ANN001 - a Celery app on the worker's broker (default: ours)
) -> subprocess.Popen:
    """A real `celery -A tasks worker` process, ready to consume when this returns."""
    name = name or f"test-{uuid.uuid4().hex[:6]}"
    cmd = [
        sys.executable, "-m", "celery", "-A", app_module, "worker", "-Q", queues, "--pool", pool,
        "-c", str(concurrency), "-n", f"{name}@%h", "--loglevel", "INFO", "--without-mingle",
        "--without-gossip", *(extra_args or []),
    ]  # fmt: skip
    out = open(logfile, "ab") if logfile else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )
    _workers.add(proc)
    if control_app is None:
        from tasks.app import app as control_app

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        replies = control_app.control.ping(
            destination=[f"{name}@{socket.gethostname()}"], timeout=0.5
        )
        if replies:
            return proc
    stop_process(proc)
    raise RuntimeError("worker did not become ready within 120 s")


@pytest.fixture(scope="session")
def fleet_worker():
    """One real worker process (threads pool) consuming every work queue for the session."""
    proc = start_worker_process(name="fleet")
    yield proc
    stop_process(proc)
