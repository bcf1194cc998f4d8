"""A fractional window (--window-hours 1.5) is stored and used as one number everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from graphs.daily import _start_run
from tasks.analyze import build_stories
from tasks.feedlist import FeedSource
from tasks.publish import build_digest
from vectorstore import articles as store
from vectorstore import runs

AS_OF = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_an_article_inside_a_one_and_a_half_hour_window_is_in_window_and_in_a_story(db) -> None:
    url = "https://window.example/rss"
    state = {"run_id": "run-frac", "as_of": AS_OF.isoformat(), "window_hours": 1.5}
    [feed_id] = _start_run(state, [FeedSource(listed=url, location=url, is_path=False)])
    placed = AS_OF - timedelta(hours=1.25)
    with db.connection() as conn:
        [aid] = store.upsert_articles(
            conn, feed_id,
            [store.NewArticle(guid="w-1", url="https://window.example/1",
                              canonical_url="https://window.example/1",
                              title="Harbour bridge reopens after repairs",
                              body="The harbour bridge reopened on Thursday after repairs.",
                              content_hash="h-w-1", published=placed, date_source="published")],
        )  # fmt: skip
        conn.execute("UPDATE articles SET state = 'processed' WHERE id = %s", (aid,))
        runs.add_run_articles(conn, "run-frac", [aid], url)
    build_stories("run-frac", AS_OF.isoformat(), 1.5, {})

    digest = build_digest("run-frac")
    [article] = digest["articles"]
    assert article["in_window"] is True
    assert digest["window_hours"] == 1.5
    assert article["story_id"] is not None
    [story] = digest["stories"]
    assert story["article_urls"] == ["https://window.example/1"]
    assert digest["counts"]["in_window"] == 1
