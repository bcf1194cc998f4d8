"""The article graph's last step: record how an article's processing ended.

Sets the article's state (so unchanged content costs nothing next run) and this run's outcome
for it. Idempotent: recording the same outcome twice changes nothing. Queue `analyze`.
"""

from __future__ import annotations

from core.redact import redact_text
from vectorstore import articles as store
from vectorstore import connection, runs

from .app import app
from .guard import STORAGE_RETRY

# run outcome -> stored article state
_STATE = {
    "new": "processed",
    "unchanged": None,  # keep what is stored
    "duplicate": "duplicate",
    "near_duplicate": "near_duplicate",
    "skipped": "skipped",
    "failed": "failed",
}


def record_outcome(
    run_id: str,
    article_id: int,
    status: str,
    *,
    duplicate_of: int | None = None,
    error: str | None = None,
    content_hash: str | None = None,
) -> None:
    """Store one article's outcome for the run and its lasting state."""
    if status not in _STATE:
        raise ValueError(f"unknown article status {status!r}")
    error = redact_text(error) if error else error  # published with the digest
    with connection() as conn:
        state = _STATE[status]
        if state is not None:
            store.set_article_outcome(
                conn,
                article_id,
                state=state,
                duplicate_of=duplicate_of,
                error=error,
                content_hash=content_hash,
            )
        runs.set_run_article_status(conn, run_id, article_id, status, error)


@app.task(**STORAGE_RETRY)
def store_outcome(
    run_id: str,
    article_id: int,
    status: str,
    duplicate_of: int | None = None,
    error: str | None = None,
    content_hash: str | None = None,
) -> dict:
    """Celery wrapper of `record_outcome`."""
    record_outcome(
        run_id,
        article_id,
        status,
        duplicate_of=duplicate_of,
        error=error,
        content_hash=content_hash,
    )
    return {"article_id": article_id, "status": status}
