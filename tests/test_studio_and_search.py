"""LangGraph Studio's server runs our graphs; semantic search finds stored articles."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "feeds" / "tech-daily.xml"


def _ingest_sample(db) -> list[int]:
    from tasks.feedlist import FeedSource
    from tasks.ingest import ingest_source
    from vectorstore import feeds as feed_store

    with db.connection() as conn:
        feed_id = feed_store.upsert_feed(conn, str(SAMPLE))
    return ingest_source(feed_id, FeedSource(str(SAMPLE), str(SAMPLE), True))["article_ids"]


@pytest.mark.slow
def test_langgraph_dev_serves_both_graphs_and_runs_the_article_graph(db, fleet_worker) -> None:
    exe = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which(
        "langgraph"
    )
    assert exe, "langgraph-cli is in the test extra"
    ids = _ingest_sample(db)
    port = free_port()
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
    proc = subprocess.Popen(
        [exe, "dev", "--no-browser", "--no-reload", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read()[-3000:]  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "langgraph dev did not start"
            time.sleep(0.5)
        assistants = httpx.post(f"{base}/assistants/search", json={}, timeout=10).json()
        by_graph = {a["graph_id"]: a["assistant_id"] for a in assistants}
        assert set(by_graph) == {"article", "daily"}
        drawn = httpx.get(f"{base}/assistants/{by_graph['article']}/graph", timeout=10).json()
        nodes = {n["id"] for n in drawn["nodes"]}
        assert {"plan", "copies", "embed", "summarize", "classify", "store"} <= nodes
        thread = httpx.post(f"{base}/threads", json={}, timeout=10).json()["thread_id"]
        result = httpx.post(
            f"{base}/threads/{thread}/runs/wait",
            json={
                "assistant_id": by_graph["article"],
                "input": {"article_id": ids[0], "run_id": "studio-test"},
                "context": {"prefer_llm": False},
            },
            timeout=120,
        ).json()
        assert result["status"] == "new", result
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    with db.connection() as conn:
        row = conn.execute("SELECT state FROM articles WHERE id = %s", (ids[0],)).fetchone()
        assert row[0] == "processed"


def test_semantic_search_ranks_the_matching_article_first(db) -> None:
    from graphs.search import main, search
    from tasks.embed import embed_articles

    ids = _ingest_sample(db)
    embed_articles(ids)
    hits = search("satellite broadband launch delayed by a hardware fault", limit=3)
    assert "orbital-relay" in hits[0]["canonical_url"]
    assert hits[0]["similarity"] >= hits[-1]["similarity"]
    assert main(["satellites", "--limit", "2", "--since", "2020-01-01"]) == 0
