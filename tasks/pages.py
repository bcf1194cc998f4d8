"""Full text from an article's own page when its feed carries only a teaser.

`fetch_page` (queue `ingest`) is the thin task; `fetch_article_page` is the plain function that
holds the logic: re-read the article, reuse the stored outcome for the same feed content, else
check robots.txt, hold one of the host's `PAGE_MAX_PER_HOST` slots, fetch the page through the
safe fetcher (HTML/XHTML only, `PAGE_MAX_BYTES`, `PAGE_TIMEOUT_SECONDS`, conditional GET from
the stored row), extract its main text and keep it only when it is longer than the feed text.
A page problem is never an exception: every failure is a stored outcome with a one-line reason
and the article stays on its feed text. It must not summarize, embed or change the article row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from core.errors import FeedRefused, PermanentError, TransientError, UnwantedType
from core.settings import Settings, get_settings
from vectorstore import articles as store
from vectorstore import connection
from vectorstore import pages as page_store

from .app import app
from .extract import extract_article, looks_like_teaser
from .fetcher import fetch_url
from .guard import STORAGE_RETRY
from .limits import host_slot
from .robots import check_robots

log = logging.getLogger(__name__)

ACCEPT_TYPES = ("text/html", "application/xhtml+xml")
QUICK_RETRY_MAX_WAIT = 2.0  # one retry in the task, only when the server asks for little wait


@dataclass(frozen=True)
class _Outcome:
    """One attempt at a page: extracted text, or why there is none."""

    status: str  # "fetched", "not_modified" or "failed"
    url: str
    text: str | None = None
    error: str | None = None
    transient: bool = False
    quick_retry: float | None = None  # seconds to wait before the one in-task retry
    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None


def needs_page(body: str, settings: Settings | None = None) -> bool:
    """True when full text is on (`FETCH_FULL_TEXT`) and `body` is only a teaser."""
    settings = settings or get_settings()
    return settings.fetch_full_text and looks_like_teaser(body, settings.fulltext_min_words)


def word_count(text: str | None) -> int:
    """Words in `text`, as the page and feed texts are compared."""
    return len((text or "").split())


def fetch_article_page(article_id: int, retry_transient: bool = False) -> dict[str, Any]:
    """Fetch, extract and store the page of one article; returns which text to use and why.

    Returns {"article_id", "text_source": "page"|"feed", "text_error", "words", "cached"}.
    A stored outcome for the article's current feed content is returned without fetching,
    unless `retry_transient` and it failed for a transient reason.
    """
    settings = get_settings()
    with connection() as conn:
        article = store.get_article(conn, article_id)
        row = page_store.get_page(conn, article_id)
    feed_words = word_count(article["body"])
    if row is not None and row["feed_hash"] == article["content_hash"]:
        retry = retry_transient and row["status"] == "failed" and row["transient"]
        if not retry:
            return _stored_result(row, feed_words)
    previous = row if row is not None and row["status"] != "failed" and row["text"] else None

    outcome = _attempt(article["url"], previous, settings)
    if outcome.quick_retry is not None:
        time.sleep(outcome.quick_retry)
        outcome = _attempt(article["url"], previous, settings)
    if outcome.status == "not_modified":
        if previous is None:
            outcome = _failed(article["url"], "HTTP 304 for a page we have not stored", None)
        else:
            outcome = _Outcome(
                "fetched",
                previous["url"],
                text=previous["text"],
                http_status=304,
                etag=outcome.etag or previous["etag"],
                last_modified=outcome.last_modified or previous["last_modified"],
            )
    status, error = "failed", outcome.error
    if outcome.status == "fetched":
        page_words = word_count(outcome.text)
        if page_words > feed_words:
            status, error = "ok", None
        else:
            status = "not_used"
            error = (
                f"page text ({page_words} words) not longer than the feed text ({feed_words} words)"
            )
    with connection() as conn:
        page_store.store_page(
            conn,
            article_id,
            url=outcome.url,
            feed_hash=article["content_hash"],
            status=status,
            text=outcome.text,
            error=error,
            transient=outcome.transient,
            http_status=outcome.http_status,
            etag=outcome.etag,
            last_modified=outcome.last_modified,
        )
        used_before = row is not None and row["status"] == "ok" and row["text"] == outcome.text
        if status == "ok" and not used_before:
            # The article's text changed under the same feed content: what was made from the
            # teaser (a summary, a vector, a copy fingerprint) is made again from the page.
            page_store.forget_derived(conn, article_id)
    if status != "ok":
        log.info("article %s stays on its feed text: %s", article_id, error)
    words = word_count(outcome.text) if status == "ok" else feed_words
    return _result(article_id, "page" if status == "ok" else "feed", error, words, cached=False)


def _attempt(url: str, previous: dict[str, Any] | None, settings: Settings) -> _Outcome:
    """One robots check and page fetch within one of the host's slots; never raises for the
    page's own problems."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return _failed(url, f"refused: {url!r} is not a valid URL", None)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return _failed(url, f"refused: {url!r} is not an http(s) URL", None)
    agent = settings.user_agent
    timeout = settings.page_timeout_seconds
    try:
        with host_slot(
            parsed.host,
            settings.page_max_per_host,
            ttl=2 * timeout + 15,  # robots.txt and the page, each within its deadline
            wait=4 * timeout,
        ):
            check_robots(url, agent)
            fetched = fetch_url(
                url,
                etag=previous["etag"] if previous else None,
                last_modified=previous["last_modified"] if previous else None,
                max_bytes=settings.page_max_bytes,
                timeout=timeout,
                accept_types=ACCEPT_TYPES,
                user_agent=agent,
                on_redirect=lambda hop: check_robots(hop, agent),
            )
    except FeedRefused as exc:
        return _failed(url, exc.brief or str(exc), None)
    except UnwantedType as exc:
        return _failed(url, f"not HTML: {exc.content_type or 'no Content-Type'}", exc.http_status)
    except PermanentError as exc:
        status = exc.http_status
        reason = exc.brief or (f"HTTP {status}" if status and status >= 400 else str(exc))
        return _failed(url, reason, status)
    except TransientError as exc:
        status = exc.http_status
        reason = exc.brief or (f"HTTP {status}" if status else str(exc))
        # 429, 5xx and dropped connections are retried once, quickly; a deadline, robots.txt
        # or a busy host are not (they would only cost the run their wait again).
        quick = None
        if exc.brief is None:
            wait = 0.5 if exc.retry_after is None else exc.retry_after
            quick = wait if wait <= QUICK_RETRY_MAX_WAIT else None
        return _Outcome("failed", url, error=reason, transient=True, quick_retry=quick,
                        http_status=status)  # fmt: skip
    if fetched.status == "not_modified":
        return _Outcome(
            "not_modified",
            fetched.final_url,
            http_status=304,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
        )
    text = extract_article(fetched.content or b"", fetched.final_url)
    if not text:
        return _failed(fetched.final_url, "no main text found", fetched.http_status)
    return _Outcome(
        "fetched",
        fetched.final_url,
        text=text,
        http_status=fetched.http_status,
        etag=fetched.etag,
        last_modified=fetched.last_modified,
    )


def _failed(url: str, reason: str, http_status: int | None) -> _Outcome:
    return _Outcome("failed", url, error=reason, http_status=http_status)


def _stored_result(row: dict[str, Any], feed_words: int) -> dict[str, Any]:
    used = row["status"] == "ok"
    words = word_count(row["text"]) if used else feed_words
    error = None if used else row["error"]
    return _result(row["article_id"], "page" if used else "feed", error, words, cached=True)


def _result(
    article_id: int, source: str, error: str | None, words: int, *, cached: bool
) -> dict[str, Any]:
    return {
        "article_id": article_id,
        "text_source": source,
        "text_error": error,
        "words": words,
        "cached": cached,
    }


@app.task(**STORAGE_RETRY)
def fetch_page(article_id: int, retry_transient: bool = False) -> dict:
    """Fetch an article's page for its full text (queue `ingest`); see `fetch_article_page`."""
    return fetch_article_page(article_id, retry_transient)
