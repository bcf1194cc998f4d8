"""Article pages: the text extracted from an article's own page, or why it was not used.

One row per article, keyed on its id and upserted: the URL the text came from, the feed
content hash it was fetched for (`feed_hash`; a changed feed item makes the row stale), the
status (`ok`: the page text is used; `not_used`: extracted but not longer than the feed text;
`failed`: `error` says why, `transient` whether a retry may help), and the validators for a
conditional GET. Callers pass a connection and own the transaction. Nothing here fetches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

STATUSES = ("ok", "not_used", "failed")


def get_page(conn: psycopg.Connection, article_id: int) -> dict[str, Any] | None:
    """The stored page row of an article, or None when its page was never tried."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute("SELECT * FROM pages WHERE article_id = %s", (article_id,))
        .fetchone()
    )


def store_page(
    conn: psycopg.Connection,
    article_id: int,
    *,
    url: str,
    feed_hash: str,
    status: str,
    text: str | None = None,
    error: str | None = None,
    transient: bool = False,
    http_status: int | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
) -> None:
    """Record the outcome of one page fetch (replacing the previous one)."""
    if status not in STATUSES:
        raise ValueError(f"page status must be one of {STATUSES}, not {status!r}")
    conn.execute(
        """
        INSERT INTO pages (article_id, url, feed_hash, status, text, error, transient,
                           http_status, etag, last_modified, fetched_at)
        VALUES (%(id)s, %(url)s, %(hash)s, %(status)s, %(text)s, %(error)s, %(transient)s,
                %(http)s, %(etag)s, %(lm)s, now())
        ON CONFLICT (article_id) DO UPDATE SET
            url = EXCLUDED.url, feed_hash = EXCLUDED.feed_hash, status = EXCLUDED.status,
            text = EXCLUDED.text, error = EXCLUDED.error, transient = EXCLUDED.transient,
            http_status = EXCLUDED.http_status, etag = EXCLUDED.etag,
            last_modified = EXCLUDED.last_modified, fetched_at = now()
        """,
        {
            "id": article_id,
            "url": url,
            "hash": feed_hash,
            "status": status,
            "text": text,
            "error": error,
            "transient": transient,
            "http": http_status,
            "etag": etag,
            "lm": last_modified,
        },
    )


def page_text(conn: psycopg.Connection, article_id: int, content_hash: str) -> str | None:
    """The page text to use instead of the feed text, when it was used for this content."""
    row = conn.execute(
        "SELECT text FROM pages WHERE article_id = %s AND feed_hash = %s AND status = 'ok'",
        (article_id, content_hash),
    ).fetchone()
    return None if row is None else row[0]


def page_outcomes(conn: psycopg.Connection, article_ids: Sequence[int]) -> dict[int, dict]:
    """`text_source` ("feed"/"page") and `text_error` per article, for the digest and report.

    An article whose page was never tried, or tried for older feed content, is on its feed
    text with no error; `not_used` and `failed` give their reason.
    """
    rows = conn.execute(
        "SELECT p.article_id, p.status, p.error FROM pages p JOIN articles a "
        "ON a.id = p.article_id AND a.content_hash = p.feed_hash WHERE p.article_id = ANY(%s)",
        (list(article_ids),),
    ).fetchall()
    found = {
        int(aid): {
            "text_source": "page" if status == "ok" else "feed",
            "text_error": None if status == "ok" else error,
        }
        for aid, status, error in rows
    }
    return {
        int(aid): found.get(int(aid), {"text_source": "feed", "text_error": None})
        for aid in article_ids
    }


def page_counts(conn: psycopg.Connection, article_ids: Sequence[int]) -> dict[str, Any]:
    """For a run report: pages used, and how many were not used for each reason."""
    outcomes = page_outcomes(conn, article_ids).values()
    reasons = Counter(o["text_error"] for o in outcomes if o["text_error"])
    return {
        "used": sum(o["text_source"] == "page" for o in outcomes),
        "not_used": dict(reasons.most_common()),
    }


def forget_derived(conn: psycopg.Connection, article_id: int) -> None:
    """Drop what was made from an article's earlier text (summary, vector, fingerprint), so
    the next steps make it again from the text now in use."""
    for table in ("summaries", "embeddings", "fingerprints"):
        conn.execute(f"DELETE FROM {table} WHERE article_id = %s", (article_id,))
