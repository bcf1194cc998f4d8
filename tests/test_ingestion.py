"""Ingestion on the fleet: hostile feeds reported by name, retries, one fetch at a time, Beat."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from graphs.daily import graph
from graphs.report import format_report
from graphs.state import RunContext
from tasks.feedlist import FeedSource
from tasks.ingest import fetch_feed, ingest_source
from tests.conftest import start_redis
from tests.feedserver import FeedServer, feed, gzip_bomb, redirect, status
from vectorstore import feeds as feed_store

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "feeds"
GOOD = (SAMPLES / "tech-daily.xml").read_bytes()
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<rss version="2.0"><channel><title>&lol3;</title></channel></rss>"""


def delayed(body: bytes, seconds: float):
    serve = feed(body)

    def respond(handler) -> None:  # noqa: ANN001
        time.sleep(seconds)
        serve(handler)

    return respond


def flaky(failures: int, body: bytes):
    """503 with Retry-After: 1 for the first `failures` requests, then the feed."""
    seen = {"n": 0}
    fail = status(503, {"Retry-After": "1"})
    ok = feed(body)

    def respond(handler) -> None:  # noqa: ANN001
        seen["n"] += 1
        (fail if seen["n"] <= failures else ok)(handler)

    return respond


@pytest.mark.slow
def test_hostile_feeds_are_reported_by_name_and_the_good_ones_stored_once(
    db, fleet_worker, tmp_path: Path
) -> None:
    with FeedServer() as server, FeedServer("127.0.0.2") as forbidden:
        forbidden.route("/feed", feed(GOOD))
        hostile = {
            server.route("/laughs.xml", feed(BILLION_LAUGHS)): "entit",
            server.route("/page.html", feed(b"<html><body>Hi</body></html>",
                                            content_type="text/html")): "not a feed",
            server.route("/bomb.xml", gzip_bomb()): "larger than",
            server.route("/gone.xml", status(410)): "410",
            server.route("/to-private", redirect("http://10.0.0.1/feed")): "10.0.0.1",
            forbidden.url("/feed"): "127.0.0.2",
            "file:///etc/passwd": "file",
            "ftp://ftp.example/feed.xml": "ftp",
            "http://169.254.169.254/latest/meta-data/": "169.254.169.254",
            "http://10.0.0.1/feed.xml": "10.0.0.1",
            "http://2130706434/feed.xml": "127.0.0.2",
            "http://0x7f000002/feed.xml": "127.0.0.2",
            f"http://[::1]:{server.port}/feed": "::1",
            "http://[::ffff:127.0.0.2]/feed": "127.0.0.2",
        }  # fmt: skip
        good_url = server.route("/good.xml", feed(GOOD))
        broken_url = server.route("/broken.xml", feed(GOOD[: len(GOOD) * 2 // 3]))
        listing = tmp_path / "feeds.txt"
        listing.write_text(
            "\n".join([good_url, broken_url, str(SAMPLES / "noticias.xml"), *hostile]) + "\n"
        )
        inputs = {"run_id": "run-hostile", "feeds_file": str(listing),
                  "as_of": "2026-11-26T23:59:59+00:00", "window_hours": 24}  # fmt: skip
        started = time.monotonic()
        asyncio.run(graph.ainvoke(inputs, context=RunContext(out_dir=str(tmp_path / "out"),
                                                             prefer_llm=False)))  # fmt: skip
        elapsed = time.monotonic() - started
        assert forbidden.connections == 0
    digest = json.loads((tmp_path / "out" / "digest.json").read_text())
    by_url = {f["url"]: f for f in digest["feeds"]}
    assert by_url[good_url]["status"] == "ok"
    assert by_url[str(SAMPLES / "noticias.xml")]["status"] == "ok"
    # invalid (truncated) XML: the entries that parsed are kept and the error is recorded
    assert by_url[broken_url]["status"] == "ok" and by_url[broken_url]["error"]
    assert 0 < by_url[broken_url]["articles"] < by_url[good_url]["articles"]
    for url, reason in hostile.items():
        entry = by_url[url]
        assert entry["status"] in ("failed", "refused"), (url, entry)
        assert reason.lower() in entry["error"].lower(), (url, entry["error"])
    report = format_report("run-hostile", {"digest_dir": str(tmp_path / "out")}, {}, {}, "")
    for url in hostile:
        assert url in report
    with db.connection() as conn:
        urls = [r[0] for r in conn.execute("SELECT canonical_url FROM articles")]
    assert len(urls) == len(set(urls)) == len(digest["articles"]) > 0
    assert elapsed < 120


def test_transient_errors_are_retried_with_retry_after_and_permanent_ones_are_not(
    db, fleet_worker
) -> None:
    with FeedServer() as server:
        flaky_url = server.route("/flaky.xml", flaky(2, GOOD))
        gone_url = server.route("/gone.xml", status(404))
        with db.connection() as conn:
            flaky_id = feed_store.upsert_feed(conn, flaky_url)
            gone_id = feed_store.upsert_feed(conn, gone_url)
        started = time.monotonic()
        ok = fetch_feed.delay(flaky_id, flaky_url, flaky_url, False).get(timeout=60)
        assert time.monotonic() - started >= 1.5  # two Retry-After: 1 waits
        gone = fetch_feed.delay(gone_id, gone_url, gone_url, False).get(timeout=30)
        assert server.hits["/flaky.xml"] == 3 and server.hits["/gone.xml"] == 1
    assert ok["status"] == "ok" and ok["article_ids"]
    assert gone["status"] == "failed" and "404" in gone["error"]
    with db.connection() as conn:
        health = feed_store.get_feed(conn, gone_id)
    assert health["consecutive_failures"] == 1 and health["http_status"] == 404


def test_two_ingestions_of_the_same_feed_at_once_fetch_it_once(db) -> None:
    with FeedServer() as server:
        url = server.route("/slow.xml", delayed(GOOD, 1.0))
        with db.connection() as conn:
            feed_id = feed_store.upsert_feed(conn, url)
        results: list[dict] = []
        source = FeedSource(url, url, False)
        threads = [
            threading.Thread(target=lambda: results.append(ingest_source(feed_id, source)))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert server.hits["/slow.xml"] == 1
    assert len(results) == 2
    assert results[0]["article_ids"] == results[1]["article_ids"] != []
    assert sum(bool(r.get("shared")) for r in results) == 1


@pytest.mark.slow
def test_beat_enqueues_ingestion_that_expires_before_its_next_run(tmp_path: Path) -> None:
    proc, url = start_redis()
    env = {**os.environ, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url,
           "REDIS_URL": url, "INGEST_INTERVAL_MINUTES": "0.05"}  # fmt: skip
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "beat", "-s", str(tmp_path / "sched"),
         "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        while client.llen("ingest") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        messages = [json.loads(m) for m in client.lrange("ingest", 0, -1)]
    finally:
        beat.terminate()
        beat.wait(10)
        proc.terminate()
        proc.wait(10)
    assert len(messages) >= 2
    for m in messages:
        assert m["headers"]["task"] == "tasks.ingest.ingest_all"
        assert m["headers"]["expires"] is not None
        assert m["content-type"] == "application/json"
