"""Operating the pipeline: --retry-failed, Beat's orchestrate task, conditional GETs, OPML, and
embeddings handed to the model in batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.feedlist import read_feed_list
from tests.conftest import start_worker_process, stop_process
from tests.feedserver import FeedServer, feed
from tests.test_durable_runs import finished_outcomes, write_feed
from tests.test_faults import private_broker

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "feeds"
AS_OF = "2026-11-26T23:00:00+00:00"


def run_daily(feeds: Path, out: Path, *extra: str, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "graphs.run_daily", "--feeds", str(feeds), "--out", str(out),
         "--as-of", AS_OF, "-q", *extra],
        cwd=ROOT, env=env or os.environ.copy(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def statuses(out: Path) -> list[str]:
    return [a["status"] for a in json.loads((out / "digest.json").read_text())["articles"]]


@pytest.mark.slow
def test_failed_articles_wait_for_retry_failed(db, fleet_worker, llm_server, tmp_path) -> None:
    feeds = write_feed(tmp_path, n=4)
    llm_server.reset()
    llm_server.fail_next(500, count=100)
    first = run_daily(feeds, tmp_path / "one")
    assert first.returncode == 0, first.stderr[-2000:]
    assert statuses(tmp_path / "one") == ["failed"] * 4
    assert "summary failed" in first.stdout

    llm_server.reset()
    second = run_daily(feeds, tmp_path / "two")
    assert second.returncode == 0
    assert statuses(tmp_path / "two") == ["failed"] * 4  # not retried without the flag
    assert llm_server.chat_requests() == []

    third = run_daily(feeds, tmp_path / "three", "--retry-failed")
    assert third.returncode == 0, third.stderr[-2000:]
    assert set(statuses(tmp_path / "three")) <= {"new", "near_duplicate"}
    assert len(llm_server.chat_requests()) >= 1


@pytest.mark.slow
def test_beats_daily_task_runs_the_daily_graph_on_the_orchestrate_worker(
    db, fleet_worker, tmp_path
) -> None:
    from graphs.orchestrate import run_daily_task

    feeds = write_feed(tmp_path, n=3)
    out = tmp_path / "beat-out"
    env = {"FEEDS_FILE": str(feeds), "DIGEST_OUT_DIR": str(out)}
    orchestrator = start_worker_process(
        "orchestrate", pool="solo", concurrency=1, env=env, name="orchestrator",
        app_module="graphs.orchestrate",
    )  # fmt: skip
    try:
        result = run_daily_task.apply_async(kwargs={"as_of": AS_OF}).get(timeout=240)
    finally:
        stop_process(orchestrator)
    digest = json.loads((out / "digest.json").read_text())
    assert digest["run_id"] == result["run_id"]
    assert len(digest["articles"]) == 3
    assert set(statuses(out)) <= {"new", "near_duplicate"}


@pytest.mark.slow
def test_a_killed_orchestrate_worker_loses_no_day_the_next_one_delivers_it_once(
    db, fleet_worker, llm_server, tmp_path
) -> None:
    import signal
    import time

    from graphs.orchestrate import run_daily_task
    from tests.test_publish import Webhook

    feeds = write_feed(tmp_path, n=24)
    out = tmp_path / "beat-out"
    hook = Webhook()
    env = {"FEEDS_FILE": str(feeds), "DIGEST_OUT_DIR": str(out), "DIGEST_WEBHOOK_URL": hook.url}

    def orchestrator(name: str):  # noqa: ANN202
        return start_worker_process(
            "orchestrate", pool="solo", concurrency=1, env=env, name=name,
            app_module="graphs.orchestrate",
        )  # fmt: skip

    def wait(predicate, seconds: float, what: str) -> None:  # noqa: ANN001
        deadline = time.monotonic() + seconds
        while not predicate():
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    llm_server.reset()
    llm_server.latency = 1.0  # 24 summaries on 8 threads: the run outlives the kill
    first = orchestrator("orch-one")
    second = None
    try:
        run_daily_task.apply_async()  # as Beat sends it: no as_of, the slot is the identity
        wait(lambda: finished_outcomes(db) >= 3, 120, "the run started")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert not (out / "digest.json").exists()
        second = orchestrator("orch-two")  # finishes the interrupted run when it starts
        wait(lambda: (out / "digest.json").exists(), 180, "the interrupted day was delivered")
        wait(lambda: len(hook.received) >= 1, 30, "the webhook was posted")
        time.sleep(1.0)
    finally:
        llm_server.latency = 0.0
        stop_process(first)
        stop_process(second)
        hook.stop()
    digest = json.loads((out / "digest.json").read_text())
    with db.connection() as conn:
        runs = conn.execute("SELECT id, status FROM runs").fetchall()
    assert runs == [(digest["run_id"], "finished")]  # one run for the slot, finished
    assert len(digest["articles"]) == 24
    assert len(hook.received) == 1  # the day's webhook, once


@pytest.mark.slow
def test_an_unchanged_feed_is_not_downloaded_again(db, fleet_worker, tmp_path) -> None:
    body = (SAMPLES / "tech-daily.xml").read_bytes()
    with FeedServer() as server:
        url = server.route("/tech.xml", feed(body, etag='"v1"'))
        listing = tmp_path / "feeds.txt"
        listing.write_text(url + "\n")
        first = run_daily(listing, tmp_path / "one")
        second = run_daily(listing, tmp_path / "two")
        conditional = [s for s in server.seen if s.headers.get("If-None-Match") == '"v1"']
    assert first.returncode == second.returncode == 0
    feeds_two = json.loads((tmp_path / "two" / "digest.json").read_text())["feeds"]
    assert feeds_two[0]["status"] == "not_modified"
    assert len(conditional) == 1


def test_an_opml_list_names_the_same_feeds_as_the_text_list() -> None:
    text = read_feed_list(SAMPLES / "feeds.txt")
    opml = read_feed_list(SAMPLES / "feeds.opml")
    assert [s.location for s in opml] == [s.location for s in text]
    assert all(s.is_path for s in opml)


@pytest.mark.slow
def test_the_embed_stage_hands_the_model_batches(db, llm_server, tmp_path) -> None:
    feeds = write_feed(tmp_path, n=30)
    llm_server.reset()
    with private_broker() as (papp, env):
        env = {**env, "EMBEDDING_MODEL": "text-embedding-3-small", "EMBED_BATCH_SIZE": "16"}
        worker = start_worker_process(concurrency=8, env=env, control_app=papp, name="oa-embed")
        try:
            proc = run_daily(feeds, tmp_path / "out", env=env)
        finally:
            stop_process(worker)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sizes = [len(r.body["input"]) for r in llm_server.requests if r.path.endswith("/embeddings")]
    articles = 30
    # classify embeds its 8 category descriptions once; the rest are articles, in batches
    article_batches = [n for n in sizes if n != 8]
    assert sum(article_batches) == articles
    assert max(article_batches) > 1 and len(article_batches) <= 4
