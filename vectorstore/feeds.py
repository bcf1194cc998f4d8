"""Feeds: their rows, their health after each fetch, and the lease that lets one ingestion of a
feed run at a time across the fleet.

Writes are keyed on the feed's URL as listed and can be repeated. Callers pass a connection and
own the transaction; the lease opens a connection of its own. Nothing here fetches or parses.
"""

from __future__ import annotations

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


class FeedLease:
    """At most one ingestion of a feed at a time, fleet-wide (a PostgreSQL advisory lock on a
    connection of its own, released on exit or when the process dies)."""

    _NAMESPACE = 7_201_101

    def __init__(self, url: str, feed_id: int) -> None:
        self.url = url
        self.feed_id = feed_id
        self._conn: psycopg.Connection | None = None

    def acquire(self, wait_seconds: float) -> bool:
        """True when this caller holds the lease; False if another ingestion held it and has
        finished while we waited (its result is on the feed row)."""
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        self._conn = conn
        got = conn.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (self._NAMESPACE, self.feed_id)
        ).fetchone()[0]
        if got:
            return True
        conn.execute(f"SET lock_timeout = '{int(wait_seconds * 1000)}ms'")
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (self._NAMESPACE, self.feed_id))
        return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()  # closing the session releases its advisory locks
            finally:
                self._conn = None
