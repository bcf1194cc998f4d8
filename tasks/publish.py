"""The digest: built from what the run stored, rendered, and saved once per day (queue `publish`).

`build_digest` assembles the `digest.json` contract from the database (feeds as listed, every
article the run read, the window's stories with their articles); `tasks.render` turns it into
Markdown, HTML, Atom and a Slack message. The task returns them all so the orchestrator, which
owns `--out`, writes the files wherever it runs. Publishing the same day twice replaces the
stored digest. `deliver_webhook` posts the Slack message after the files are written: retried,
bounded in time, its outcome recorded on the day's digest, never raised.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from core.redact import redact_text, redact_url
from core.timeutil import as_utc, parse_iso
from vectorstore import articles as store
from vectorstore import connection, pages, runs

from .app import app
from .guard import STORAGE_RETRY
from .render import render_atom, render_html, render_markdown, slack_payload

log = logging.getLogger(__name__)

__all__ = ["build_digest", "deliver_webhook", "publish_digest", "render_markdown"]


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _shown_error(error: str | None) -> str | None:
    return redact_text(error) if error else error


def build_digest(run_id: str) -> dict[str, Any]:
    """The `digest.json` document of a run.

    Every feed URL in it is the URL as written with its secrets masked (`core.redact`): the
    digest is published, the database keeps the URL it fetches.
    """
    with connection() as conn:
        run = runs.get_run(conn, run_id)
        if run is None:
            raise LookupError(f"no run {run_id}")
        feeds = runs.run_feeds(conn, run_id)
        articles = runs.run_articles(conn, run_id)
        stories = runs.stories(conn, run_id)
        shown = store.articles_for_display(conn, [i for s in stories for i in s["article_ids"]])
        carried = store.carriers_of(conn, [a["id"] for a in shown])
        texts = pages.page_outcomes(conn, [a["id"] for a in articles])
    details = {a["id"]: a for a in shown}
    as_of: datetime = as_utc(run["as_of"])
    window_hours = float(run["window_hours"])
    start = as_of - timedelta(hours=window_hours)
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
                "feed_url": redact_url(a["feed_url"]),
                "source": a["feed_title"] or redact_url(a["feed_url"]),
                "published": _iso(a["published"]),
                "date_source": a["date_source"],
                "first_seen": _iso(a["first_seen"]),
                "in_window": start < placed <= as_of,
                "status": _status(a),
                "duplicate_of": a["duplicate_of"],
                "story_id": story_of.get(a["id"]),
                "summary": a["summary"],
                "summary_source": a["summary_source"],
                "key_points": a["key_points"] or [],
                "tags": a["tags"] or [],
                "category": a["category"],
                "text_source": texts[a["id"]]["text_source"],
                "text_error": texts[a["id"]]["text_error"],
                "error": _shown_error(a["error"] or a["summary_note"]),
            }
        )
    for a in shown:
        url_of.setdefault(a["id"], a["canonical_url"])
    out_stories = [_story(s, details, url_of, carried) for s in stories]
    counts: dict[str, int] = {}
    for a in out_articles:
        counts[a["status"]] = counts.get(a["status"], 0) + 1
    modes = {k: redact_text(str(v)) for k, v in (run["modes"] or {}).items()}
    return {
        "run_id": run_id,
        "mode": "fleet" if modes.get("broker", "").startswith("fleet") else "embedded",
        "modes": modes,
        "as_of": _iso(as_of),
        # The stored number; written as 24 rather than 24.0 when whole (same value in JSON).
        "window_hours": int(window_hours) if window_hours.is_integer() else window_hours,
        "generated_at": _iso(datetime.now(UTC)),
        "feeds": [
            {
                "url": redact_url(f["listed_url"]),  # as written, secrets masked
                "status": f["status"],
                "error": _shown_error(f["error"]),
                "articles": f["articles"],
                "http_status": f["http_status"],
                "consecutive_failures": f["consecutive_failures"],
                "last_fetched_at": _iso(f["last_fetched_at"]),
                "dropped": f.get("dropped") or [],
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


def _status(a: dict[str, Any]) -> str:
    """The run's outcome for an article; one summarized as new and later found to be a copy of
    an earlier published text (whose feed was read after it) shows as that copy."""
    if a["status"] == "new" and a["duplicate_of"] and a["state"] in ("duplicate", "near_duplicate"):
        return str(a["state"])
    return str(a["status"])


def _story(
    s: dict[str, Any],
    details: dict[int, dict],
    url_of: dict[int, str],
    carried: dict[int, list[dict[str, Any]]],
) -> dict[str, Any]:
    """A story of the digest: its distinct texts, each with the outlets that also carried it
    (copies of its text under other links, and other feeds listing the same link)."""
    kept: dict[int, dict[str, Any]] = {}
    members = [details[aid] for aid in s["article_ids"] if aid in details]
    ids = {a["id"] for a in members}
    for a in members:  # oldest first: a text's kept article comes before its copies
        root = a["duplicate_of"] if a["duplicate_of"] in ids else a["id"]
        if root not in kept:
            kept[root] = {
                "url": a["canonical_url"],
                "title": a["title"],
                "source": a["feed_title"] or redact_url(a["feed_url"]),
                "published": _iso(a["placed_at"]),
                "summary": a["summary"],
                "also_in": [],
            }
        else:
            kept[root]["also_in"].append(
                {"source": a["feed_title"] or redact_url(a["feed_url"]), "url": a["canonical_url"],
                 "title": a["title"]}
            )  # fmt: skip
        for c in carried.get(a["id"], []):
            source = c["title"] or redact_url(c["feed_url"])
            kept[root]["also_in"].append({"source": source, "url": c["url"], "title": a["title"]})
    signals = dict(s.get("signals") or {})
    timeline = signals.pop("timeline", [])
    return {
        "id": s["id"],
        "label": s["label"],
        "synthesis": s["synthesis"],
        "summary": s.get("summary") or s["synthesis"],
        "keywords": s["keywords"],
        "article_urls": [url_of[aid] for aid in s["article_ids"] if aid in url_of],
        "sources": [redact_url(u) for u in s["sources"]],
        "independent_texts": s.get("independent_texts") or len(kept),
        "trend_score": round(float(s["trend_score"]), 4),
        "is_trending": bool(s["is_trending"]),
        "label_source": s.get("label_source", "offline"),
        "signals": signals,
        "timeline": timeline,
        "articles": list(kept.values()),
    }


@app.task(**STORAGE_RETRY)
def publish_digest(run_id: str) -> dict:
    """Build, render and save the run's digest (one per day); returns what to write and post.

    `digest` (digest.json), `markdown`, `html`, `atom` (digest.xml), `slack` (the webhook body)
    and `day` (the digest's day, which a second publication replaces).
    """
    digest = build_digest(run_id)
    day = digest_day(digest)
    with connection() as conn:
        runs.save_digest(conn, day, run_id, digest)
    return {
        "digest": digest,
        "day": day.isoformat(),
        "markdown": render_markdown(digest),
        "html": render_html(digest),
        "atom": render_atom(digest),
        "slack": slack_payload(digest),
    }


def digest_day(digest: dict[str, Any]) -> date:
    """The day a digest is saved under: its `as_of` date (UTC)."""
    return parse_iso(digest["as_of"]).date()


def payload_sha256(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


async def post_json(
    url: str,
    payload: dict[str, Any],
    *,
    attempts: int = 3,
    timeout: float = 10.0,
    backoff: float = 1.0,
) -> dict[str, Any]:
    """POST `payload`, retrying connection errors, 429 and 5xx with exponential backoff and
    jitter; another 4xx is final. Returns the outcome, never raises; errors never quote the
    URL (a webhook URL is a secret)."""
    error, status = "", None
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        for attempt in range(1, attempts + 1):
            retry_after = None
            try:
                resp = await asyncio.wait_for(client.post(url, json=payload), timeout * 1.5)
                status = resp.status_code
                if 200 <= status < 300:
                    return {"status": "sent", "attempts": attempt, "http_status": status}
                error = f"HTTP {status}: {' '.join(resp.text.split())[:200]}"
                if status != 429 and status < 500:
                    return {"status": "failed", "attempts": attempt, "http_status": status,
                            "error": error}  # fmt: skip
                retry_after = resp.headers.get("retry-after")
            except TimeoutError:  # a server that trickles its answer: the whole call's deadline
                status, error = None, f"no complete answer within {timeout * 1.5:.0f}s"
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}".split(" for url")[0]
            if attempt < attempts:
                delay = backoff * 2 ** (attempt - 1) * (1 + random.random() / 2)
                if retry_after and retry_after.isdigit():
                    delay = min(max(delay, float(retry_after)), 30.0)
                await asyncio.sleep(delay)
    return {"status": "failed", "attempts": attempts, "http_status": status, "error": error}


async def deliver_webhook(
    url: str,
    day: date,
    payload: dict[str, Any],
    *,
    attempts: int = 3,
    timeout: float = 10.0,
    backoff: float = 1.0,
) -> dict[str, Any]:
    """Post the day's digest to the webhook once per day (slot): a digest already sent for
    that day is not sent again, changed or not ("unchanged" / "already_sent"). The outcome is
    recorded on the day's digest and returned; never raises."""
    digest_hash = payload_sha256(payload)

    def previous() -> dict[str, Any] | None:
        with connection() as conn:
            row = runs.get_digest(conn, day)
        return (row or {}).get("webhook")

    def record(outcome: dict[str, Any]) -> None:
        with connection() as conn:
            runs.record_webhook(conn, day, outcome)

    try:
        before = await asyncio.to_thread(previous)
    except Exception as exc:  # noqa: BLE001 - the post matters more than the bookkeeping
        log.warning("webhook: cannot read the previous delivery: %s", exc)
        before = None
    if before and before.get("status") in ("sent", "unchanged", "already_sent"):
        # One post per slot: a re-run of the same day writes its files but never posts twice.
        same = before.get("payload_sha256") == digest_hash
        outcome = {"status": "unchanged" if same else "already_sent", "attempts": 0}
    else:
        try:
            outcome = await post_json(
                url, payload, attempts=attempts, timeout=timeout, backoff=backoff
            )
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed URL: reported, never raised
            outcome = {"status": "failed", "attempts": 1, "error": type(exc).__name__}
    outcome.update(payload_sha256=digest_hash, at=_iso(datetime.now(UTC)))
    if outcome["status"] == "failed":
        log.warning("digest webhook failed after %s attempts: %s", outcome["attempts"],
                    outcome.get("error"))  # fmt: skip
    try:
        await asyncio.to_thread(record, outcome)
    except Exception as exc:  # noqa: BLE001 - recorded in the log instead
        log.warning("webhook: cannot record the outcome: %s", exc)
    return outcome
