"""Storage against a real PostgreSQL + pgvector: migrations, idempotent upserts, HNSW search."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg

from vectorstore import articles as store
from vectorstore import feeds as feed_store
from vectorstore.migrations import MIGRATIONS, migrate


def _article(n: int, text: str = "body text", url: str | None = None) -> store.NewArticle:
    return store.NewArticle(
        guid=f"g{n}", url=url or f"https://a.example/{n}", canonical_url=url or f"https://a.example/{n}",
        title=f"Title {n}", body=text, content_hash=f"h-{text}", date_source="published",
        published=datetime(2026, 11, 26, 8, n, tzinfo=UTC),
    )  # fmt: skip


def test_migrations_are_recorded_and_run_once(db) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        assert migrate(conn, dims=384) == []
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
        assert names == [name for name, _ in MIGRATIONS]
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()
        assert ext is not None
        idx = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'embeddings_hnsw'"
        ).fetchone()
        assert idx and "hnsw" in idx[0] and "vector_cosine_ops" in idx[0]


def test_upserting_the_same_entries_twice_keeps_one_row_each(db) -> None:
    with db.connection() as conn:
        feed = feed_store.upsert_feed(conn, "https://feed.example/rss")
        assert feed_store.upsert_feed(conn, "https://feed.example/rss") == feed
        first = store.upsert_articles(conn, feed, [_article(1), _article(2, "other")])
        again = store.upsert_articles(conn, feed, [_article(1), _article(2, "other")])
        assert first == again
        assert conn.execute("SELECT count(*) FROM articles").fetchone()[0] == 2


def test_changed_content_goes_back_to_pending_unchanged_keeps_state(db) -> None:
    with db.connection() as conn:
        feed = feed_store.upsert_feed(conn, "f")
        [aid] = store.upsert_articles(conn, feed, [_article(1)])
        store.set_article_outcome(conn, aid, state="processed")
        store.upsert_articles(conn, feed, [_article(1)])
        assert store.get_article(conn, aid)["state"] == "processed"
        store.upsert_articles(conn, feed, [_article(1, "edited body text")])
        row = store.get_article(conn, aid)
        assert row["state"] == "pending" and row["content_hash"] == "h-edited body text"


def test_same_guid_under_a_new_link_moves_the_row(db) -> None:
    with db.connection() as conn:
        feed = feed_store.upsert_feed(conn, "f")
        [aid] = store.upsert_articles(conn, feed, [_article(1, url="https://a.example/old")])
        [again] = store.upsert_articles(conn, feed, [_article(1, url="https://a.example/new")])
        assert again == aid
        assert store.get_article(conn, aid)["canonical_url"] == "https://a.example/new"


def test_embeddings_are_found_by_cosine_and_skipped_when_current(db) -> None:
    rng = np.random.default_rng(0)
    with db.connection() as conn:
        feed = feed_store.upsert_feed(conn, "f")
        ids = store.upsert_articles(conn, feed, [_article(i, f"text {i}") for i in range(20)])
        vecs = rng.normal(size=(20, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        rows = [(aid, f"h-text {i}", vecs[i]) for i, aid in enumerate(ids)]
        store.store_embeddings(conn, rows, "m1")
        store.store_embeddings(conn, rows, "m1")
        assert conn.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 20
        assert store.current_embeddings(conn, ids, "m1") == set(ids)
        assert store.current_embeddings(conn, ids, "another-model") == set()
        hits = store.nearest_articles(conn, vecs[7], limit=3)
        assert hits[0]["id"] == ids[7] and hits[0]["similarity"] > 0.99


def test_the_fullest_body_wins_whatever_feed_is_read_first_and_the_source_stays(db) -> None:
    """One article per canonical URL: a teaser from a second feed never replaces the full text,
    the first feed stays the source, the other is a carrier; the order does not matter."""
    from dataclasses import replace

    url = "https://wire.example/story"
    full = _article(1, "The full text of the story " * 20, url=url)
    teaser = replace(_article(2, "The full text…", url=url), guid="other-guid")
    for order in (("full", "teaser"), ("teaser", "full"), ("full", "teaser")):
        with db.connection() as conn:
            conn.execute("TRUNCATE carriers, articles, feeds RESTART IDENTITY CASCADE")
            feeds = {name: feed_store.upsert_feed(conn, name) for name in order}
            rows = {"full": full, "teaser": teaser}
            ids = {store.upsert_articles(conn, feeds[name], [rows[name]])[0] for name in order}
            for name in order:  # a second pass over both feeds changes nothing
                store.upsert_articles(conn, feeds[name], [rows[name]])
            assert len(ids) == 1, order
            article = store.get_article(conn, ids.pop())
            assert article["body"] == full.body, order
            assert article["feed_id"] == feeds[order[0]], order  # the source stays the first
            carried = conn.execute(
                "SELECT feed_id FROM carriers WHERE article_id = %s ORDER BY feed_id",
                (article["id"],),
            ).fetchall()
            assert {r[0] for r in carried} == set(feeds.values())


def test_an_outcome_never_lands_on_newer_content(db) -> None:
    from dataclasses import replace

    with db.connection() as conn:
        feed = feed_store.upsert_feed(conn, "f")
        v1 = _article(1, "the first version of the story " * 10)
        (aid,) = store.upsert_articles(conn, feed, [v1])
        # While the run processes v1, the feed corrects the story: v2 waits as pending.
        v2 = replace(v1, body=v1.body + " with a correction", content_hash="h-v2")
        store.upsert_articles(conn, feed, [v2])
        store.set_article_outcome(conn, aid, state="processed", content_hash=v1.content_hash)
        row = store.get_article(conn, aid)
    assert (row["state"], row["content_hash"], row["processed_hash"]) == ("pending", "h-v2", None)
