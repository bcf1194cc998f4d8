"""The database connection: one pool per process, pgvector registered, schema migrated.

Owns where PostgreSQL is (an external `DATABASE_URL`, or the embedded PostgreSQL 16 + pgvector
that the `pgserver` package runs under `AML_DATA_DIR`) and the process-wide connection pool of
at most `DATABASE_POOL_SIZE` connections. Pools never cross a fork: `get_db()` opens a new one
in each process that asks. When the server refuses connections ("too many clients") a caller
gets a clear error naming DATABASE_POOL_SIZE and max_connections at once, instead of waiting
out the pool. It knows nothing of queues, graphs or feeds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from core.errors import ConfigError
from core.redact import redact_dsn, redact_text
from core.settings import Settings, get_settings

from .migrations import migrate

log = logging.getLogger(__name__)

_lock = threading.Lock()
_db: Database | None = None
_servers: dict[str, object] = {}  # embedded servers kept alive for the process


def embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under `data_dir/pg` and return its URI."""
    with warnings.catch_warnings():  # pgserver's import warns about XDG_RUNTIME_DIR on servers
        warnings.simplefilter("ignore")
        import pgserver  # imported lazily: only the embedded mode needs it

    pg_dir = (Path(data_dir) / "pg").resolve()
    key = str(pg_dir)
    if key not in _servers:
        pg_dir.mkdir(parents=True, exist_ok=True)
        _servers[key] = pgserver.get_server(pg_dir, cleanup_mode="stop")
    return _servers[key].get_uri()  # type: ignore[attr-defined]


def resolve_url(settings: Settings) -> str:
    """The database URL in use: DATABASE_URL, else the embedded server's."""
    return settings.database_url or embedded_url(settings.aml_data_dir)


POOL_WAIT_SECONDS = 30.0  # how long a caller waits for a busy pool's free connection
REFUSAL_CHECK_SECONDS = 0.5  # how often a waiting caller checks whether the server refused


def is_refusal(exc: BaseException) -> bool:
    """The server is at max_connections ("sorry, too many clients already")."""
    return "too many clients" in str(exc).lower()


def refusal_message(url: str, exc: BaseException, pool_size: int) -> str:
    return (
        f"PostgreSQL at {redact_dsn(url)} refuses new connections: "
        f"{' '.join(str(exc).split())}. The processes using it hold more connections than its "
        f"max_connections allows: lower DATABASE_POOL_SIZE (this process: {pool_size}) or the "
        "number of worker processes (docker-compose.yml adds them up), or raise max_connections"
    )


class _Pool(ConnectionPool):
    """A pool that remembers when the server last refused it a connection."""

    refused: tuple[float, BaseException] | None = None  # (when, why) until a connect works

    def _connect(self, timeout: float | None = None) -> psycopg.Connection:
        try:
            conn = super()._connect(timeout)
        except psycopg.OperationalError as exc:
            if is_refusal(exc):
                self.refused = (time.monotonic(), exc)
            raise
        self.refused = None
        return conn


class Database:
    """A migrated database and its connection pool (one per process)."""

    def __init__(self, url: str, *, dims: int, max_size: int = 10) -> None:
        self.url = url
        self.pid = os.getpid()
        self.max_size = max_size
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                migrate(conn, dims=dims)
        except psycopg.OperationalError as exc:
            if is_refusal(exc):
                raise ConfigError(refusal_message(url, exc, max_size)) from exc
            reason = redact_text(" ".join(str(exc).split()))
            raise ConfigError(
                f"cannot reach PostgreSQL at {redact_dsn(url)}: {reason}; "
                "check DATABASE_URL, or unset it to use the embedded database"
            ) from exc
        self.pool = _Pool(
            url,
            min_size=1,
            max_size=max_size,
            configure=register_vector,
            kwargs={"connect_timeout": 10},
            check=self._check,
            open=True,
            name="aml",
        )

    def _check(self, conn: psycopg.Connection) -> None:
        """Checked at checkout: after a server restart every idle connection is dead, so drop
        them all at once instead of discovering them one by one with growing waits."""
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            self.pool.check()
            raise

    def _getconn(self) -> psycopg.Connection:
        """A connection from the pool, waiting up to POOL_WAIT_SECONDS for a free one; at once
        a clear DatabaseUnavailable when the server refused the pool a new connection."""
        deadline = time.monotonic() + POOL_WAIT_SECONDS
        while True:
            try:
                return self.pool.getconn(timeout=REFUSAL_CHECK_SECONDS)
            except PoolTimeout:
                refused = self.pool.refused  # cleared by the pool's next successful connect
                if refused is not None:
                    raise psycopg.OperationalError(
                        refusal_message(self.url, refused[1], self.max_size)
                    ) from refused[1]
                if time.monotonic() >= deadline:
                    raise

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; the block's work commits on success, rolls back on error."""
        conn = self._getconn()
        try:
            with conn:
                yield conn
        finally:
            self.pool.putconn(conn)

    def close(self) -> None:
        self.pool.close()


def get_db(settings: Settings | None = None) -> Database:
    """The process-wide database, opened (and migrated) on first use in each process."""
    global _db
    with _lock:
        if _db is None or _db.pid != os.getpid():
            settings = settings or get_settings()
            _db = Database(
                resolve_url(settings),
                dims=settings.embedding_dimensions,
                max_size=settings.database_pool_size,
            )
            log.info("database ready: %s", redact_dsn(_db.url))
        return _db


def close_db() -> None:
    """Close this process's pool (the embedded server stops when the process exits)."""
    global _db
    with _lock:
        if _db is not None and _db.pid == os.getpid():
            _db.close()
        _db = None


@contextmanager
def connection() -> Iterator[psycopg.Connection]:
    """Shorthand for `get_db().connection()`."""
    with get_db().connection() as conn:
        yield conn
