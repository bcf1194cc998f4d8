"""LangGraph's PostgreSQL checkpointer on our database, and the lease that keeps one run per
feed list at a time.

The checkpointer (langgraph-checkpoint-postgres) stores every step of the daily graph, so a
run killed midway resumes where it stopped. It gets its own async pool with the settings the
saver needs (autocommit, no prepared statements, dict rows). The lease is a session-level
advisory lock on a dedicated connection: it is released when the run ends or its process dies
(and, a known limit, when PostgreSQL restarts mid-run).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

CHECKPOINT_POOL_SIZE = 8  # connections of the orchestrator's checkpointer pool


def _retrying_saver(pool: AsyncConnectionPool) -> object:
    """An AsyncPostgresSaver whose reads and writes ride out a PostgreSQL restart: LangGraph
    does not retry checkpoint I/O, and the writes are upserts, so repeating them is safe."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def retried(call: Any, *args: Any, **kwargs: Any) -> Any:
        delay = 0.25
        for attempt in range(8):
            try:
                return await call(*args, **kwargs)
            except psycopg.OperationalError:
                if attempt == 7:
                    raise
                await pool.check()  # drop every dead connection at once
                await asyncio.sleep(delay)
                delay = min(4.0, delay * 2)
        raise AssertionError("unreachable")

    class RetryingSaver(AsyncPostgresSaver):
        async def aput(self, *args: Any, **kwargs: Any) -> Any:
            return await retried(super().aput, *args, **kwargs)

        async def aput_writes(self, *args: Any, **kwargs: Any) -> Any:
            return await retried(super().aput_writes, *args, **kwargs)

        async def aget_tuple(self, *args: Any, **kwargs: Any) -> Any:
            return await retried(super().aget_tuple, *args, **kwargs)

    return RetryingSaver(pool)  # type: ignore[arg-type]


@asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[object]:
    """An `AsyncPostgresSaver` on `url`, its tables created on first use."""
    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=CHECKPOINT_POOL_SIZE,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    await pool.open()
    try:
        saver = _retrying_saver(pool)
        await saver.setup()  # type: ignore[attr-defined]
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
            except psycopg.Error:
                pass  # the server restarted: the lock ended with its session
            finally:
                self._conn.close()
                self._conn = None
