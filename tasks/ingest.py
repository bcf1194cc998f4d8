"""Ingestion: fetch one feed, parse it, store its entries as pending articles, record health.

`fetch_feed` (queue `ingest`) is the thin task; `ingest_source` is the plain function it calls
and that run_daily calls directly for local-path feeds. Transient failures (timeouts, 5xx, 429)
are retried with backoff and jitter, at most 3 attempts within about a minute; permanent ones
(404, refused address, not a feed) are recorded on the feed without retry. A feed's failure is
a result, never an exception that stops the run. `ingest_all` is what Beat enqueues.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from core.errors import FeedRefused, PermanentError, TransientError
from core.redact import redact_text, redact_url
from core.settings import get_settings
from vectorstore import DatabaseUnavailable, connection, get_db
from vectorstore import articles as store
from vectorstore import feeds as feed_store

from .app import app
from .feedlist import FeedSource, read_feed_list
from .feedparse import parse_feed
from .fetcher import fetch_url, read_local_feed

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RETRY_CAP_SECONDS = 30.0  # one wait; three attempts stay within about a minute


def store_document(feed_id: int, content: bytes, feed_url: str) -> dict[str, Any]:
    """Parse feed bytes and upsert their entries; returns article ids and what was dropped."""
    parsed = parse_feed(content, feed_url)
    rows = [
        store.NewArticle(
            guid=e.guid,
            url=e.url,
            canonical_url=e.canonical_url,
            title=e.title or e.url,
            body=e.text,
            content_hash=e.content_hash,
            published=e.published,
            date_source=e.date_source,
            author=e.author,
            language=e.language,
        )
        for e in parsed.entries
    ]
    with connection() as conn:
        ids = store.upsert_articles(conn, feed_id, rows)
    return {
        "article_ids": ids,
        "title": parsed.title,
        "dropped": parsed.dropped,
        "warning": parsed.bozo_error,
    }


def ingest_source(feed_id: int, source: FeedSource) -> dict[str, Any]:
    """Read and store one feed, once at a time fleet-wide.

    When another ingestion of the same feed is already running (Beat's and a daily run's, or
    two workers'), this one waits for it and reports its result instead of fetching again.
    Raises TransientError for a retry; records everything else.
    """
    settings = get_settings()
    lease = feed_store.FeedLease(get_db().url, feed_id)
    try:
        if not lease.acquire(wait_seconds=settings.feed_timeout_seconds * 3 + 30):
            with connection() as conn:
                feed = feed_store.get_feed(conn, feed_id)
            status = feed["last_status"] or "failed"
            return {
                "status": status,
                "article_ids": list(feed["last_article_ids"]) if status == "ok" else [],
                "error": feed["last_error"] if status in ("failed", "refused") else None,
                "shared": True,
            }
        return _ingest(feed_id, source)
    except DatabaseUnavailable as exc:
        raise TransientError(
            f"feed {redact_url(source.listed)}: database busy or unreachable: {exc}"
        ) from exc
    finally:
        lease.release()


def _ingest(feed_id: int, source: FeedSource) -> dict[str, Any]:
    with connection() as conn:
        feed = feed_store.get_feed(conn, feed_id)
    http_status = None
    try:
        if source.is_path:
            content, etag, last_modified, base = read_local_feed(source.location), None, None, None
        else:
            fetched = fetch_url(
                source.location, etag=feed["etag"], last_modified=feed["last_modified"]
            )
            http_status = fetched.http_status
            if fetched.status == "not_modified":
                with connection() as conn:
                    feed_store.record_feed_fetch(
                        conn, feed_id, status="not_modified", http_status=304, article_ids=[]
                    )
                return {"status": "not_modified", "article_ids": [], "error": None}
            content, etag, last_modified = (
                fetched.content or b"",
                fetched.etag,
                fetched.last_modified,
            )
            base = fetched.final_url
        result = store_document(feed_id, content, base or source.location)
    except FeedRefused as exc:
        return _record_failure(feed_id, "refused", str(exc), http_status)
    except PermanentError as exc:
        return _record_failure(feed_id, "failed", str(exc), exc.http_status or http_status)
    with connection() as conn:
        feed_store.record_feed_fetch(
            conn,
            feed_id,
            status="ok",
            http_status=http_status,
            error=result["warning"],
            title=result["title"],
            etag=etag,
            last_modified=last_modified,
            article_ids=result["article_ids"],
        )
    # A malformed ("bozo") feed keeps the entries that parsed; its error is reported with it.
    return {"status": "ok", **result, "error": result["warning"]}


def _record_failure(
    feed_id: int, status: str, error: str, http_status: int | None
) -> dict[str, Any]:
    error = redact_text(error)  # stored on the feed and published with the digest
    with connection() as conn:
        feed_store.record_feed_fetch(
            conn, feed_id, status=status, http_status=http_status, error=error
        )
    log.warning("feed %s %s: %s", feed_id, status, error)
    return {"status": status, "article_ids": [], "error": error}


@app.task(bind=True, max_retries=MAX_ATTEMPTS - 1)
def fetch_feed(self, feed_id: int, listed: str, location: str, is_path: bool = False) -> dict:  # noqa: ANN001
    """Fetch, parse and store one feed (queue `ingest`)."""
    source = FeedSource(listed, location, is_path)
    try:
        return ingest_source(feed_id, source)
    except TransientError as exc:
        if self.request.retries >= MAX_ATTEMPTS - 1:
            return _record_failure(
                feed_id,
                "failed",
                f"{exc} (gave up after {MAX_ATTEMPTS} attempts)",
                exc.http_status,
            )
        backoff = min(RETRY_CAP_SECONDS, 2.0 * 3**self.request.retries)
        wait = exc.retry_after if exc.retry_after is not None else backoff
        wait = min(RETRY_CAP_SECONDS, wait) * random.uniform(0.8, 1.2)
        log.info("feed %s: %s; retrying in %.1fs", redact_url(listed), exc, wait)
        raise self.retry(exc=exc, countdown=wait) from exc


@app.task
def ingest_all() -> dict:
    """Beat's periodic ingestion: one `fetch_feed` per listed feed, without waiting on them."""
    settings = get_settings()
    sources = read_feed_list(settings.feeds_file)
    with connection() as conn:
        ids = [feed_store.upsert_feed(conn, s.listed) for s in sources]
    for feed_id, source in zip(ids, sources):
        fetch_feed.delay(feed_id, source.listed, source.location, source.is_path)
    return {"feeds": len(sources)}
