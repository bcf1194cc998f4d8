"""The digest: built from what the run stored, rendered, and saved once per day (queue `publish`).

`build_digest` assembles the `digest.json` contract from the database (feeds as listed, every
article the run read, the window's stories); `render_markdown` turns it into `digest.md`.
The task returns both so the orchestrator, which owns `--out`, writes the files wherever it
runs. Publishing the same day twice replaces the stored digest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from vectorstore import DatabaseUnavailable, connection, runs

from .app import app


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def build_digest(run_id: str) -> dict[str, Any]:
    """The `digest.json` document of a run."""
    with connection() as conn:
        run = runs.get_run(conn, run_id)
        if run is None:
            raise LookupError(f"no run {run_id}")
        feeds = runs.run_feeds(conn, run_id)
        articles = runs.run_articles(conn, run_id)
        stories = runs.stories(conn, run_id)
    as_of: datetime = run["as_of"]
    start = as_of - timedelta(hours=run["window_hours"])
    url_of = {}
    story_of: dict[int, str] = {}
    for s in stories:
        for aid in s["article_ids"]:
            story_of[aid] = s["id"]
    out_articles = []
    for a in articles:
        placed = a["published"] or a["first_seen"]
        url_of[a["id"]] = a["canonical_url"]
        out_articles.append(
            {
                "url": a["url"],
                "canonical_url": a["canonical_url"],
                "title": a["title"],
                "feed_url": a["feed_url"],
                "published": _iso(a["published"]),
                "date_source": a["date_source"],
                "first_seen": _iso(a["first_seen"]),
                "in_window": start < placed <= as_of,
                "status": a["status"],
                "duplicate_of": a["duplicate_of"],
                "story_id": story_of.get(a["id"]),
                "summary": a["summary"],
                "summary_source": a["summary_source"],
                "key_points": a["key_points"] or [],
                "tags": a["tags"] or [],
                "category": a["category"],
                "error": a["error"] or a["summary_note"],
            }
        )
    with connection() as conn:
        missing = [aid for s in stories for aid in s["article_ids"] if aid not in url_of]
        if missing:
            from vectorstore import articles as store

            for row in store.get_articles(conn, missing):
                url_of[row["id"]] = row["canonical_url"]
    out_stories = [
        {
            "id": s["id"],
            "label": s["label"],
            "synthesis": s["synthesis"],
            "keywords": s["keywords"],
            "article_urls": [url_of[aid] for aid in s["article_ids"] if aid in url_of],
            "sources": s["sources"],
            "trend_score": round(float(s["trend_score"]), 4),
            "is_trending": bool(s["is_trending"]),
        }
        for s in stories
    ]
    counts: dict[str, int] = {}
    for a in out_articles:
        counts[a["status"]] = counts.get(a["status"], 0) + 1
    modes = run["modes"] or {}
    return {
        "run_id": run_id,
        "mode": "fleet" if modes.get("broker", "").startswith("fleet") else "embedded",
        "modes": modes,
        "as_of": _iso(as_of),
        "window_hours": run["window_hours"],
        "generated_at": _iso(datetime.now(UTC)),
        "feeds": [
            {
                "url": f["listed_url"],
                "status": f["status"],
                "error": f["error"],
                "articles": f["articles"],
                "http_status": f["http_status"],
                "consecutive_failures": f["consecutive_failures"],
                "last_fetched_at": _iso(f["last_fetched_at"]),
            }
            for f in feeds
        ],
        "articles": out_articles,
        "stories": out_stories,
        "counts": {
            "feeds": len(feeds),
            "articles": len(out_articles),
            "in_window": sum(a["in_window"] for a in out_articles),
            "stories": len(out_stories),
            "trending": sum(s["is_trending"] for s in out_stories),
            **{f"articles_{k}": v for k, v in sorted(counts.items())},
        },
    }


def render_markdown(digest: dict[str, Any]) -> str:
    """`digest.md`: trending stories first, then every story of the window, then feed health."""
    by_url = {a["canonical_url"]: a for a in digest["articles"]}
    lines = [
        f"# News digest — {digest['as_of']}",
        "",
        f"Window: {digest['window_hours']} h ending {digest['as_of']} · run `{digest['run_id']}`",
        "Modes: " + "; ".join(f"{k}: {v}" for k, v in digest["modes"].items()),
        "",
    ]
    trending = [s for s in digest["stories"] if s["is_trending"]]
    sections = (
        [("Trending", trending), ("All stories", digest["stories"])]
        if trending
        else [("Stories", digest["stories"])]
    )
    for heading, stories in sections:
        lines += [f"## {heading}", ""]
        if not stories:
            lines += ["_No articles in this window._", ""]
        for s in stories:
            lines.append(f"### {s['label']}")
            if s.get("synthesis"):
                lines += ["", s["synthesis"]]
            lines.append("")
            for url in s["article_urls"]:
                a = by_url.get(url)
                title = a["title"] if a else url
                lines.append(
                    f"- [{title}]({url})" + (f" — {a['summary']}" if a and a["summary"] else "")
                )
            lines.append("")
    lines += ["## Feeds", "", "| feed | status | articles | error |", "|---|---|---|---|"]
    for f in digest["feeds"]:
        err = (f["error"] or "").replace("|", "\\|")
        lines.append(f"| {f['url']} | {f['status']} | {f['articles']} | {err} |")
    return "\n".join(lines) + "\n"


@app.task(
    autoretry_for=(DatabaseUnavailable,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=5,
)
def publish_digest(run_id: str) -> dict:
    """Build, render and save the run's digest (one per day); returns what to write."""
    digest = build_digest(run_id)
    as_of = datetime.fromisoformat(digest["as_of"].replace("Z", "+00:00"))
    with connection() as conn:
        runs.save_digest(conn, as_of.date(), run_id, digest)
    return {"digest": digest, "markdown": render_markdown(digest)}
