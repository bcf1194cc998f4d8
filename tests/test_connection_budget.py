"""The fleet's PostgreSQL connections are bounded and add up below max_connections.

The pool size is a setting; every compose service sets it and its concurrency so the whole
fleet fits PostgreSQL's default max_connections (100) with headroom; and when the server
refuses connections ("too many clients") the caller gets a clear error naming the settings
to change, quickly, instead of waiting out the pool. The refusal tests run their own small
embedded PostgreSQL (max_connections 4), never the session's.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import yaml

from core.errors import ConfigError
from core.settings import get_settings
from vectorstore import DatabaseUnavailable, close_db, get_db
from vectorstore.db import Database

ROOT = Path(__file__).resolve().parent.parent
PG_MAX_CONNECTIONS = 100  # PostgreSQL's default, which the compose file keeps
HEADROOM = 20  # connections left for psql, migrations of a new image, a scaled worker


def test_the_pool_size_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_POOL_SIZE", "3")
    get_settings.cache_clear()
    close_db()
    try:
        assert get_db().pool.max_size == 3
    finally:
        close_db()
        monkeypatch.undo()
        get_settings.cache_clear()


def _worker_processes(command: list[str]) -> int:
    """Processes that each open a pool: prefork children plus the parent; else one."""
    if "--pool" in command and command[command.index("--pool") + 1] == "prefork":
        return int(command[command.index("-c") + 1]) + 1
    return 1


def test_the_compose_fleet_fits_postgres_max_connections() -> None:
    from vectorstore.checkpoints import CHECKPOINT_POOL_SIZE
    from vectorstore.feeds import LEASE_CONNECTIONS

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    total, seen = 0, []
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        if "DATABASE_URL" not in env:
            continue  # postgres and redis themselves
        assert "DATABASE_POOL_SIZE" in env, name
        command = [str(c) for c in (svc.get("entrypoint") or []) + (svc.get("command") or [])]
        per_process = int(env["DATABASE_POOL_SIZE"]) + LEASE_CONNECTIONS
        if "graphs.orchestrate" in command or "graphs.run_daily" in command:
            per_process += 1 + CHECKPOINT_POOL_SIZE  # the run lease and the checkpointer
        replicas = int((svc.get("deploy") or {}).get("replicas", 1))
        total += replicas * _worker_processes(command) * per_process
        seen.append(name)
    assert {"worker-ingest", "worker-llm", "worker-embed", "worker-analyze", "orchestrator",
            "run-daily"} <= set(seen)  # fmt: skip
    assert total <= PG_MAX_CONNECTIONS - HEADROOM, total
    assert f"= {total}" in (ROOT / "docker-compose.yml").read_text()  # the comment's sum


@pytest.fixture(scope="module")
def tiny_server():
    """A private embedded PostgreSQL that accepts at most 4 connections."""
    import pgserver

    tmp = Path(tempfile.mkdtemp(prefix="aml-tiny-pg-"))
    server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_connections = 4")
        conn.execute("ALTER SYSTEM SET superuser_reserved_connections = 0")
        conn.execute("ALTER SYSTEM SET max_wal_senders = 0")
    server.cleanup()  # stop it; started again below with the new limits
    server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def _hold(url: str, n: int) -> list[psycopg.Connection]:
    return [psycopg.connect(url, autocommit=True) for _ in range(n)]


def _bounded(fn):  # noqa: ANN001, ANN202
    """Run fn in a thread; a hang fails the test instead of blocking the session."""
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(fn).result(timeout=120)


def test_a_full_server_at_startup_gives_a_clear_error(tiny_server: str) -> None:
    held = _hold(tiny_server, 4)
    try:
        with pytest.raises(ConfigError) as err:
            _bounded(lambda: Database(tiny_server, dims=384, max_size=2))
    finally:
        for conn in held:
            conn.close()
    assert "max_connections" in str(err.value) and "DATABASE_POOL_SIZE" in str(err.value)


def test_a_pool_that_cannot_grow_fails_fast_with_a_clear_error(tiny_server: str) -> None:
    database = Database(tiny_server, dims=384, max_size=3)
    database.pool.wait()  # its one connection is open
    held = _hold(tiny_server, 3)  # the server is now full

    def second_connection() -> None:
        with database.connection(), database.connection():
            pass

    try:
        with pytest.raises(DatabaseUnavailable) as err:
            _bounded(second_connection)
    finally:
        for conn in held:
            conn.close()
        database.close()
    message = str(err.value)
    assert "too many clients" in message.lower()
    assert "max_connections" in message and "DATABASE_POOL_SIZE" in message


def test_feed_leases_in_flight_share_one_connection_and_stay_exclusive(db) -> None:
    """Eight ingestions in one process hold their leases over one connection; a second
    ingestion of a leased feed waits for the first and is told it finished."""
    import threading

    from vectorstore.feeds import FeedLease

    leases = [FeedLease(db.url, feed_id) for feed_id in range(1, 9)]
    assert all(lease.acquire(wait_seconds=5) for lease in leases)
    try:
        with db.connection() as conn:
            lease_conns = conn.execute(
                "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = 7201101 AND granted"
            ).fetchone()[0]
        assert lease_conns == 1
        outcome: list[bool] = []
        second = FeedLease(db.url, 1)
        waiter = threading.Thread(target=lambda: outcome.append(second.acquire(30)))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # feed 1 is leased: the second ingestion waits
    finally:
        for lease in leases:
            lease.release()
    waiter.join(30)
    second.release()
    assert outcome == [False]  # it got the lease after the first finished, and says so
