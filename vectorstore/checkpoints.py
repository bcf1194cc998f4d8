"""LangGraph's PostgreSQL checkpointer on our database, and the lease that keeps one run per
feed list at a time.

The checkpointer (langgraph-checkpoint-postgres) stores every step of the daily graph, so a
run killed midway resumes where it stopped. It gets its own async pool with the settings the
saver needs (autocommit, no prepared statements, dict rows). The lease is a session-level
advisory lock on a dedicated connection: it is released when the run ends or its process dies.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


@asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[object]:
    """An `AsyncPostgresSaver` on `url`, its tables created on first use."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=8,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    await pool.open()
    try:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        yield saver
    finally:
        await pool.close()


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class RunLease:
    """An exclusive lease on a name (a feed list), held while the connection lives."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.key = _lock_key("aml-run:" + name)
        self._conn: psycopg.Connection | None = None

    def try_acquire(self) -> bool:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if row and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            finally:
                self._conn.close()
                self._conn = None
