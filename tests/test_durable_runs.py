"""Durable runs: kill the orchestrator mid-run and resume; one run per feed list at a time."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

ROOT = Path(__file__).resolve().parent.parent
AS_OF = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
TOPICS = (
    "harbour dredging", "school lunch prices", "a rare orchid bloom", "rail signal upgrades",
    "a chess tournament", "bakery flour shortage", "wind farm permits", "library hours",
    "a museum heist", "bridge toll changes", "river flood barriers", "a jazz festival",
    "hospital parking fees", "a satellite launch", "coffee harvest yields", "bus driver hiring",
    "a wildfire evacuation", "vaccine clinic openings", "a robotics contest", "fishing quotas",
    "a marathon route", "housing permits", "solar panel subsidies", "a zoo birth",
    "airport runway repairs", "a chip factory hiring", "tax refund delays", "a film premiere",
    "a cyberattack on a council", "snow plough budgets", "a new ferry line", "wine exports",
    "a landslide on a highway", "opera ticket sales", "a water main break", "teacher strikes",
    "an election recount", "a meteor shower", "a cheese recall", "a stadium renovation",
)  # fmt: skip


def write_feed(folder: Path, n: int = 40) -> Path:
    rng = random.Random(7)
    items = []
    for i, topic in enumerate(TOPICS[:n]):
        figure = rng.randint(12, 980)
        name = rng.choice(["Ada Marsh", "Leo Brandt", "Mia Okoro", "Ravi Sen", "Ines Vidal"])
        body = (
            f"Officials in the town of Westmere said on Tuesday that {topic} will dominate the "
            f"coming months, with {figure} residents affected. {name}, who leads the effort, "
            f"said the plan for {topic} had been debated for {rng.randint(2, 9)} years. "
            f"Critics argue the cost of {figure * 1000} dollars is too high for {topic}. "
            f"A public meeting about {topic} is set for next week at the civic hall."
        )
        when = (AS_OF - timedelta(hours=1 + i % 20)).strftime("%a, %d %b %Y %H:%M:%S +0000")
        items.append(
            f"<item><title>{escape(topic.capitalize())} in Westmere</title>"
            f"<link>https://westmere.example/{i}</link><guid>w-{i}</guid>"
            f"<pubDate>{when}</pubDate><description>{escape(body)}</description></item>"
        )
    feed = folder / "westmere.xml"
    feed.write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Westmere News</title>'
        "<link>https://westmere.example/</link><description>d</description>"
        + "".join(items)
        + "</channel></rss>"
    )
    listing = folder / "feeds.txt"
    listing.write_text("westmere.xml\n")
    return listing


def run_daily_cmd(feeds: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "graphs.run_daily", "--feeds", str(feeds), "--out", str(out),
            "--as-of", AS_OF.isoformat(), "-q"]  # fmt: skip


def finished_outcomes(db) -> int:
    with db.connection() as conn:
        return conn.execute(
            "SELECT count(*) FROM run_articles WHERE status <> 'pending'"
        ).fetchone()[0]


@pytest.mark.slow
def test_killed_orchestrator_resumes_and_every_article_is_processed_once(
    db, fleet_worker, llm_server, tmp_path: Path
) -> None:
    feeds = write_feed(tmp_path)
    llm_server.reset()
    llm_server.latency = 0.4
    try:
        proc = subprocess.Popen(run_daily_cmd(feeds, tmp_path / "out"), cwd=ROOT,
                                env=os.environ.copy(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while finished_outcomes(db) < 5:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = finished_outcomes(db)
        assert killed_at < 40, "the run finished before it could be killed"

        again = subprocess.run(run_daily_cmd(feeds, tmp_path / "out"), cwd=ROOT,
                               env=os.environ.copy(), capture_output=True, text=True,
                               timeout=300)  # fmt: skip
    finally:
        llm_server.latency = 0.0
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resumed unfinished run" in again.stdout
    digest = json.loads((tmp_path / "out" / "digest.json").read_text())
    statuses = [a["status"] for a in digest["articles"]]
    assert len(statuses) == 40
    assert set(statuses) <= {"new", "near_duplicate"}, statuses
    with db.connection() as conn:
        runs = conn.execute("SELECT id, status FROM runs").fetchall()
        summaries = conn.execute("SELECT count(*) FROM summaries").fetchone()[0]
        vectors = conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]
        articles = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
    assert runs == [(digest["run_id"], "finished")]
    assert articles == vectors == 40
    assert summaries == statuses.count("new")
    titles = [
        m["content"].split("Title: ", 1)[1].split("\n", 1)[0]
        for body in llm_server.chat_requests()
        for m in body["messages"]
        if m["role"] == "user"
    ]
    twice = [t for t in set(titles) if titles.count(t) > 1]
    assert len(twice) <= 8  # only calls in flight on the worker when the orchestrator died


@pytest.mark.slow
def test_a_second_run_of_the_same_feed_list_refuses_while_the_first_works(
    db, fleet_worker, llm_server, tmp_path: Path
) -> None:
    feeds = write_feed(tmp_path, n=20)
    llm_server.reset()
    llm_server.latency = 2.0  # the first run works for several seconds
    try:
        first = subprocess.Popen(run_daily_cmd(feeds, tmp_path / "a"), cwd=ROOT,
                                 env=os.environ.copy(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while finished_outcomes(db) < 1:
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run(run_daily_cmd(feeds, tmp_path / "b"), cwd=ROOT,
                                env=os.environ.copy(), capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert first.wait(180) == 0
    finally:
        llm_server.latency = 0.0
    assert second.returncode == 3
    assert "another run is already working on this feed list" in second.stderr
    assert not (tmp_path / "b" / "digest.json").exists()
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM articles").fetchone()[0] == 20
        assert conn.execute("SELECT count(*) FROM digests").fetchone()[0] == 1
