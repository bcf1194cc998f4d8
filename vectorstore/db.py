"""The database connection: one pool per process, pgvector registered, schema migrated.

Owns where PostgreSQL is (an external `DATABASE_URL`, or the embedded PostgreSQL 16 + pgvector
that the `pgserver` package runs under `AML_DATA_DIR`) and the process-wide connection pool.
Pools never cross a fork: `get_db()` opens a new one in each process that asks. It knows nothing
of queues, graphs or feeds.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

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


class Database:
    """A migrated database and its connection pool (one per process)."""

    def __init__(self, url: str, *, dims: int, max_size: int = 20) -> None:
        self.url = url
        self.pid = os.getpid()
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                migrate(conn, dims=dims)
        except psycopg.OperationalError as exc:
            reason = redact_text(" ".join(str(exc).split()))
            raise ConfigError(
                f"cannot reach PostgreSQL at {redact_dsn(url)}: {reason}; "
                "check DATABASE_URL, or unset it to use the embedded database"
            ) from exc
        self.pool = ConnectionPool(
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

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; the block's work commits on success, rolls back on error."""
        with self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self.pool.close()


def get_db(settings: Settings | None = None) -> Database:
    """The process-wide database, opened (and migrated) on first use in each process."""
    global _db
    with _lock:
        if _db is None or _db.pid != os.getpid():
            settings = settings or get_settings()
            _db = Database(resolve_url(settings), dims=settings.embedding_dimensions)
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
