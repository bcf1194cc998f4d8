"""Stories and trends over the digest window (queue `analyze`).

`build_stories` groups the window's articles into stories (an exact or near duplicate joins the
story of the article it duplicates) and stores them per run, replacing any earlier set. The
grouping and scoring are plain functions; the task only reads, calls them and upserts.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from vectorstore import DatabaseUnavailable, connection, runs
from vectorstore import articles as store

from .app import app


def story_id(canonical_url: str) -> str:
    """A story's id, stable across runs: derived from its first article's canonical URL."""
    return "s-" + hashlib.sha1(canonical_url.encode()).hexdigest()[:12]


def group_stories(articles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One story per original article; duplicates and near-duplicates join their original's."""
    by_id = {a["id"]: a for a in articles}
    groups: dict[int, list[dict[str, Any]]] = {}
    for a in articles:
        root = a["id"]
        seen = set()
        while by_id.get(root, {}).get("duplicate_of") and root not in seen:
            seen.add(root)
            parent = by_id[root]["duplicate_of"]
            if parent not in by_id:
                break
            root = parent
        groups.setdefault(root, []).append(a)
    stories = []
    for root, members in groups.items():
        lead = by_id[root]
        stories.append(
            {
                "id": story_id(lead["canonical_url"]),
                "label": lead["title"],
                "article_ids": [m["id"] for m in members],
                "sources": sorted({m["feed_url"] for m in members}),
                "trend_score": 0.0,
                "is_trending": False,
            }
        )
    return stories


@app.task(
    autoretry_for=(DatabaseUnavailable,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=5,
)
def build_stories(run_id: str, as_of: str, window_hours: float) -> dict:
    """Group the window's articles into stories and store them for the run."""
    end = datetime.fromisoformat(as_of)
    start = end - timedelta(hours=window_hours)
    with connection() as conn:
        articles = store.articles_between(conn, start, end)
    stories = group_stories(articles)
    with connection() as conn:
        runs.replace_stories(conn, run_id, stories)
    return {"stories": len(stories), "trending": sum(s["is_trending"] for s in stories)}
