"""Runs and what they produced: per-run feed and article outcomes, stories, digests.

A run is keyed by its id; re-recording an outcome replaces it, and publishing the same day
twice replaces the digest. This module holds storage only: no scoring, no rendering.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


def create_run(
    conn: psycopg.Connection,
    run_id: str,
    *,
    as_of: datetime,
    window_hours: float,
    feeds_key: str,
    modes: dict[str, str],
) -> None:
    """Record a run as started (idempotent: resuming keeps the row); `window_hours` may be
    fractional (1.5) and is stored as given."""
    conn.execute(
        "INSERT INTO runs (id, as_of, window_hours, feeds_key, status, modes) "
        "VALUES (%s, %s, %s, %s, 'running', %s) ON CONFLICT (id) DO UPDATE SET "
        "status = 'running', modes = EXCLUDED.modes, finished_at = NULL",
        (run_id, as_of, float(window_hours), feeds_key, Jsonb(modes)),
    )


def finish_run(
    conn: psycopg.Connection, run_id: str, *, status: str, report: dict[str, Any]
) -> None:
    conn.execute(
        "UPDATE runs SET status = %s, report = %s, finished_at = now() WHERE id = %s",
        (status, Jsonb(report), run_id),
    )


def get_run(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    return (
        conn.cursor(row_factory=dict_row)
        .execute("SELECT * FROM runs WHERE id = %s", (run_id,))
        .fetchone()
    )


def record_run_feed(
    conn: psycopg.Connection,
    run_id: str,
    position: int,
    *,
    listed_url: str,
    feed_id: int | None,
    status: str,
    error: str | None,
    articles: int,
    dropped: Sequence[dict[str, Any]] = (),
) -> None:
    """A feed's outcome in the run, with the entries it read but could not use (`dropped`)."""
    conn.execute(
        "INSERT INTO run_feeds (run_id, position, listed_url, feed_id, status, error, articles, "
        "dropped) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, position) DO "
        "UPDATE SET listed_url = EXCLUDED.listed_url, feed_id = EXCLUDED.feed_id, "
        "status = EXCLUDED.status, error = EXCLUDED.error, articles = EXCLUDED.articles, "
        "dropped = EXCLUDED.dropped",
        (run_id, position, listed_url, feed_id, status, error, articles, Jsonb(list(dropped))),
    )


def add_run_articles(
    conn: psycopg.Connection, run_id: str, article_ids: Sequence[int], feed_url: str
) -> None:
    """Note that this run read these articles (first listing wins)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO run_articles (run_id, article_id, feed_url) VALUES (%s, %s, %s) "
            "ON CONFLICT (run_id, article_id) DO NOTHING",
            [(run_id, aid, feed_url) for aid in article_ids],
        )


def set_run_article_status(
    conn: psycopg.Connection, run_id: str, article_id: int, status: str, error: str | None
) -> None:
    conn.execute(
        "UPDATE run_articles SET status = %s, error = %s WHERE run_id = %s AND article_id = %s",
        (status, error, run_id, article_id),
    )


def add_waiting_articles(
    conn: psycopg.Connection, run_id: str, feed_ids: Sequence[int], states: Sequence[str]
) -> list[int]:
    """Add to the run the articles of these feeds waiting in `states` (pending from Beat's
    ingestion, failed for --retry-failed); returns their ids."""
    rows = conn.execute(
        "INSERT INTO run_articles (run_id, article_id, feed_url) "
        "SELECT %s, a.id, f.url FROM articles a JOIN feeds f ON f.id = a.feed_id "
        "WHERE a.feed_id = ANY(%s) AND a.state = ANY(%s) "
        "ON CONFLICT (run_id, article_id) DO NOTHING RETURNING article_id",
        (run_id, list(feed_ids), list(states)),
    ).fetchall()
    return [int(r[0]) for r in rows]


def unfinished_run(conn: psycopg.Connection, as_of: datetime, feeds_key: str) -> str | None:
    """The latest run of this window and feed list that never finished (to resume it)."""
    row = conn.execute(
        "SELECT id FROM runs WHERE as_of = %s AND feeds_key = %s AND status = 'running' "
        "ORDER BY started_at DESC LIMIT 1",
        (as_of, feeds_key),
    ).fetchone()
    return None if row is None else str(row[0])


def interrupted_run(
    conn: psycopg.Connection, feeds_key: str, *, max_age_hours: float = 48.0
) -> dict[str, Any] | None:
    """The latest run of this feed list that never finished, started within `max_age_hours`
    (call it while holding the list's lease: then no live process is running it). Older ones
    are marked `abandoned`, so they are not looked at again."""
    conn.execute(
        "UPDATE runs SET status = 'abandoned', finished_at = now() WHERE feeds_key = %s "
        "AND status = 'running' AND started_at < now() - make_interval(secs => %s)",
        (feeds_key, max_age_hours * 3600),
    )
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT id, as_of, window_hours, started_at FROM runs WHERE feeds_key = %s "
            "AND status = 'running' ORDER BY started_at DESC LIMIT 1",
            (feeds_key,),
        )
        .fetchone()
    )


def run_article_status(conn: psycopg.Connection, run_id: str, article_id: int) -> str | None:
    """The outcome this run already recorded for an article (None or 'pending' if none)."""
    row = conn.execute(
        "SELECT status FROM run_articles WHERE run_id = %s AND article_id = %s",
        (run_id, article_id),
    ).fetchone()
    return None if row is None else str(row[0])


def run_feeds(conn: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT rf.*, f.last_fetched_at, f.http_status, f.consecutive_failures, f.last_error "
            "FROM run_feeds rf LEFT JOIN feeds f ON f.id = rf.feed_id "
            "WHERE rf.run_id = %s ORDER BY rf.position",
            (run_id,),
        )
        .fetchall()
    )


def run_articles(conn: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    """Every article this run read, with its summary (a copy: its kept article's), its copy
    link and its outlet."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        SELECT a.id, a.url, a.canonical_url, a.title, a.published, a.first_seen,
               a.date_source, a.language, a.state, ra.feed_url, ra.status, ra.error,
               f.title AS feed_title, a.duplicate_of AS duplicate_of_id,
               d.canonical_url AS duplicate_of,
               coalesce(s.summary, ds.summary) AS summary,
               coalesce(s.source, ds.source) AS summary_source,
               coalesce(s.key_points, ds.key_points) AS key_points,
               coalesce(s.tags, ds.tags) AS tags, coalesce(s.category, ds.category) AS category,
               s.note AS summary_note
        FROM run_articles ra
        JOIN articles a ON a.id = ra.article_id
        JOIN feeds f ON f.id = a.feed_id
        LEFT JOIN articles d ON d.id = a.duplicate_of
        LEFT JOIN summaries s ON s.article_id = a.id AND s.content_hash = a.content_hash
                             AND a.duplicate_of IS NULL
        LEFT JOIN summaries ds ON ds.article_id = d.id AND ds.content_hash = d.content_hash
        WHERE ra.run_id = %s
        ORDER BY coalesce(a.published, a.first_seen) DESC, a.id
        """,
            (run_id,),
        )
        .fetchall()
    )


def replace_stories(
    conn: psycopg.Connection, run_id: str, stories: Sequence[dict[str, Any]]
) -> None:
    """Store a run's stories, replacing any earlier set for the same run."""
    with conn.transaction():
        conn.execute("DELETE FROM stories WHERE run_id = %s", (run_id,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO stories (run_id, id, label, synthesis, keywords, article_ids, "
                "sources, trend_score, is_trending, summary, key, independent_texts) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        run_id,
                        s["id"],
                        s["label"],
                        s.get("synthesis"),
                        Jsonb(s.get("keywords", [])),
                        list(s["article_ids"]),
                        list(s["sources"]),
                        float(s.get("trend_score", 0.0)),
                        bool(s.get("is_trending", False)),
                        s.get("summary"),
                        s.get("key"),
                        s.get("independent_texts"),
                    )
                    for s in stories
                ],
            )


def stories(conn: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT * FROM stories WHERE run_id = %s "
            "ORDER BY is_trending DESC, trend_score DESC, id",
            (run_id,),
        )
        .fetchall()
    )


def save_digest(conn: psycopg.Connection, day: date, run_id: str, digest: dict[str, Any]) -> None:
    """One digest per day: publishing the same day again replaces it."""
    conn.execute(
        "INSERT INTO digests (day, run_id, digest) VALUES (%s, %s, %s) ON CONFLICT (day) "
        "DO UPDATE SET run_id = EXCLUDED.run_id, digest = EXCLUDED.digest, published_at = now()",
        (day, run_id, Jsonb(digest)),
    )


def store_story_details(
    conn: psycopg.Connection, run_id: str, details: dict[str, dict[str, Any]]
) -> None:
    """Per story of the run: how its label was made and the signals behind its trend score."""
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE stories SET label_source = %s, signals = %s WHERE run_id = %s AND id = %s",
            [
                (d.get("label_source", "offline"), Jsonb(d.get("signals", {})), run_id, sid)
                for sid, d in details.items()
            ],
        )


def get_story(conn: psycopg.Connection, run_id: str, story_id: str) -> dict[str, Any] | None:
    return (
        conn.cursor(row_factory=dict_row)
        .execute("SELECT * FROM stories WHERE run_id = %s AND id = %s", (run_id, story_id))
        .fetchone()
    )


def set_story_label(
    conn: psycopg.Connection,
    run_id: str,
    story_id: str,
    *,
    label: str,
    synthesis: str | None,
    label_source: str,
) -> None:
    """Replace a story's label and synthesis (its summary too) (idempotent)."""
    conn.execute(
        "UPDATE stories SET label = %s, synthesis = %s, summary = coalesce(%s, summary), "
        "label_source = %s WHERE run_id = %s AND id = %s",
        (label, synthesis, synthesis, label_source, run_id, story_id),
    )


def story_text(conn: psycopg.Connection, key: str) -> dict[str, Any] | None:
    """A story text written earlier for the same texts (label, synthesis, source), if any."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute("SELECT * FROM story_texts WHERE key = %s", (key,))
        .fetchone()
    )


def save_story_text(
    conn: psycopg.Connection, key: str, *, label: str, synthesis: str | None, source: str
) -> None:
    """Keep a story's text for reuse while its texts are unchanged."""
    conn.execute(
        "INSERT INTO story_texts (key, label, synthesis, source) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (key) DO UPDATE SET label = EXCLUDED.label, "
        "synthesis = EXCLUDED.synthesis, source = EXCLUDED.source, created_at = now()",
        (key, label, synthesis, source),
    )


def get_digest(conn: psycopg.Connection, day: date) -> dict[str, Any] | None:
    """The day's saved digest row: run_id, digest, published_at, webhook."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute("SELECT * FROM digests WHERE day = %s", (day,))
        .fetchone()
    )


def record_webhook(conn: psycopg.Connection, day: date, outcome: dict[str, Any]) -> None:
    """What happened when the day's digest was posted to the webhook."""
    conn.execute("UPDATE digests SET webhook = %s WHERE day = %s", (Jsonb(outcome), day))
