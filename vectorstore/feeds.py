"""Feeds: their rows, their health after each fetch, and the lease that lets one ingestion of a
feed run at a time across the fleet.

Writes are keyed on the feed's URL as listed and can be repeated. Callers pass a connection and
own the transaction. Leases are PostgreSQL advisory locks held on ONE connection per process
(outside the pool, `LEASE_CONNECTIONS`), whatever the number of ingestions in flight: a worker
with 32 threads holds 32 leases over one session, not 32 sessions. Nothing here fetches or parses.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row


def upsert_feed(conn: psycopg.Connection, url: str) -> int:
    """The id of the feed listed as `url`, created when new."""
    row = conn.execute(
        "INSERT INTO feeds (url) VALUES (%s) ON CONFLICT (url) DO UPDATE SET url = EXCLUDED.url "
        "RETURNING id",
        (url,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def get_feed(conn: psycopg.Connection, feed_id: int) -> dict[str, Any]:
    row = (
        conn.cursor(row_factory=dict_row)
        .execute("SELECT * FROM feeds WHERE id = %s", (feed_id,))
        .fetchone()
    )
    if row is None:
        raise LookupError(f"no feed with id {feed_id}")
    return row


def record_feed_fetch(
    conn: psycopg.Connection,
    feed_id: int,
    *,
    status: str,
    http_status: int | None = None,
    error: str | None = None,
    title: str | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    article_ids: Sequence[int] | None = None,
) -> None:
    """Feed health after one fetch: failures count up, a success resets them."""
    failed = status in ("failed", "refused")
    conn.execute(
        """
        UPDATE feeds SET
            last_fetched_at = now(), last_status = %(status)s, http_status = %(http)s,
            last_error = %(error)s,
            consecutive_failures = CASE WHEN %(failed)s THEN consecutive_failures + 1 ELSE 0 END,
            title = coalesce(%(title)s, title),
            etag = CASE WHEN %(failed)s THEN etag ELSE coalesce(%(etag)s, etag) END,
            last_modified = CASE WHEN %(failed)s THEN last_modified
                                 ELSE coalesce(%(lm)s, last_modified) END,
            last_article_ids = coalesce(%(ids)s, last_article_ids)
        WHERE id = %(id)s
        """,
        {
            "status": status,
            "http": http_status,
            "error": error,
            "failed": failed,
            "title": title,
            "etag": etag,
            "lm": last_modified,
            "ids": list(article_ids) if article_ids is not None else None,
            "id": feed_id,
        },
    )


LEASE_CONNECTIONS = 1  # connections each process holds for feed leases, at most
_LEASE_NAMESPACE = 7_201_101
_POLL_SECONDS = 0.2  # how often a waiting ingestion asks again


class _LeaseSession:
    """The process's lease connection: every feed lease of the process is an advisory lock on
    it. Advisory locks stack within a session, so the process also keeps the set of feeds it
    holds: a second ingestion of a feed in the same process waits like one elsewhere."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lock = threading.Lock()
        self.conn: psycopg.Connection | None = None
        self.held: set[int] = set()

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=10, application_name="aml-feed-leases"
            )
            self.held.clear()  # a new session holds nothing
        return self.conn

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()  # closing the session releases its advisory locks
        self.conn = None
        self.held.clear()

    def try_claim(self, feed_id: int) -> bool:
        with self.lock:
            if feed_id in self.held:
                return False
            try:
                row = (
                    self._connection()
                    .execute("SELECT pg_try_advisory_lock(%s, %s)", (_LEASE_NAMESPACE, feed_id))
                    .fetchone()
                )
            except psycopg.OperationalError:
                self._drop()
                raise
            if row and row[0]:
                self.held.add(feed_id)
                return True
            return False

    def release(self, feed_id: int) -> None:
        with self.lock:
            if feed_id not in self.held:
                return  # the session was lost: the lock ended with it
            self.held.discard(feed_id)
            try:
                self._connection().execute(
                    "SELECT pg_advisory_unlock(%s, %s)", (_LEASE_NAMESPACE, feed_id)
                )
            except psycopg.OperationalError:
                self._drop()


_sessions: dict[tuple[int, str], _LeaseSession] = {}
_sessions_lock = threading.Lock()


def _session(url: str) -> _LeaseSession:
    """This process's lease session for `url` (never shared across a fork)."""
    key = (os.getpid(), url)
    with _sessions_lock:
        if key not in _sessions:
            _sessions[key] = _LeaseSession(url)
        return _sessions[key]


class FeedLease:
    """At most one ingestion of a feed at a time, fleet-wide (an advisory lock on the
    process's lease connection, released on exit or when the process dies)."""

    def __init__(self, url: str, feed_id: int) -> None:
        self.url = url
        self.feed_id = feed_id
        self._held = False

    def acquire(self, wait_seconds: float) -> bool:
        """True when this caller holds the lease; False if another ingestion held it and has
        finished while we waited (its result is on the feed row; the lease is then ours until
        `release`). Raises LockNotAvailable (a DatabaseUnavailable) if it is still held after
        `wait_seconds`."""
        session = _session(self.url)
        deadline = time.monotonic() + wait_seconds
        waited = False
        while not session.try_claim(self.feed_id):
            if time.monotonic() >= deadline:
                raise psycopg.errors.LockNotAvailable(
                    f"feed {self.feed_id}: another ingestion still holds its lease after "
                    f"{wait_seconds:.0f}s"
                )
            waited = True
            time.sleep(_POLL_SECONDS)
        self._held = True
        return not waited

    def release(self) -> None:
        if self._held:
            self._held = False
            _session(self.url).release(self.feed_id)
