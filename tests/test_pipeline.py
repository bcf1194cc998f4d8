"""The daily graph end to end on the sample feeds, with a real worker process on Redis."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from graphs.daily import graph
from graphs.state import RunContext
from tasks.feedlist import read_feed_list
from tasks.feedparse import parse_feed

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "feeds" / "feeds.txt"
AS_OF = "2026-11-26T23:59:59+00:00"
CONTRACT_FIELDS = {
    "url", "canonical_url", "title", "feed_url", "published", "in_window", "status",
    "duplicate_of", "story_id", "summary", "summary_source", "error",
}  # fmt: skip
STATUSES = {"new", "unchanged", "duplicate", "near_duplicate", "skipped", "failed"}


def sample_canonical_urls(feed_list: Path = SAMPLES) -> set[str]:
    urls: set[str] = set()
    for src in read_feed_list(feed_list):
        parsed = parse_feed(Path(src.location).read_bytes(), src.location)
        urls |= {e.canonical_url for e in parsed.entries}
    return urls


def run_graph(out: Path, run_id: str, feeds: Path = SAMPLES, **ctx: object) -> dict:
    inputs = {"run_id": run_id, "feeds_file": str(feeds), "as_of": AS_OF, "window_hours": 24}
    context = RunContext(out_dir=str(out), **ctx)  # type: ignore[arg-type]
    asyncio.run(graph.ainvoke(inputs, context=context))
    return json.loads((out / "digest.json").read_text())


def counts(db) -> dict[str, int]:
    with db.connection() as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("articles", "summaries", "embeddings")
        }


@pytest.mark.slow
def test_every_sample_article_is_accounted_for_and_a_second_run_adds_nothing(
    db, fleet_worker, tmp_path: Path
) -> None:
    digest = run_graph(tmp_path / "one", "run-one", prefer_llm=False)
    expected = sample_canonical_urls()
    got = {a["canonical_url"] for a in digest["articles"]}
    assert got == expected
    assert {a["status"] for a in digest["articles"]} <= STATUSES
    assert [f["url"] for f in digest["feeds"]] == [s.listed for s in read_feed_list(SAMPLES)]
    assert all(f["status"] == "ok" for f in digest["feeds"])
    new = [a for a in digest["articles"] if a["status"] == "new"]
    assert new and all(a["summary"] and a["summary_source"] == "extractive" for a in new)
    dups = [a for a in digest["articles"] if a["status"] == "duplicate"]
    assert dups and all(a["duplicate_of"] in expected for a in dups)
    in_window = {a["canonical_url"] for a in digest["articles"] if a["in_window"]}
    in_stories = {u for s in digest["stories"] for u in s["article_urls"]}
    assert in_window <= in_stories
    for key in ("run_id", "mode", "as_of"):
        assert digest[key]
    for a in digest["articles"]:
        assert CONTRACT_FIELDS <= a.keys()
    before = counts(db)
    assert before["articles"] == len(expected)

    again = run_graph(tmp_path / "two", "run-two", prefer_llm=False)
    assert {a["status"] for a in again["articles"]} == {"unchanged"}
    assert counts(db) == before
    assert (tmp_path / "two" / "digest.md").read_text().startswith("# News digest")


@pytest.mark.slow
def test_llm_summaries_keep_the_system_message_fixed_and_the_article_in_its_slot(
    db, fleet_worker, llm_server, tmp_path: Path
) -> None:
    feeds = tmp_path / "feeds.txt"
    feeds.write_text(str(ROOT / "examples" / "feeds" / "tech-daily.xml") + "\n")
    llm_server.reset()
    digest = run_graph(tmp_path / "out", "run-llm", feeds=feeds, prefer_llm=True)
    new = [a for a in digest["articles"] if a["status"] == "new"]
    source = ROOT / "examples" / "feeds" / "tech-daily.xml"
    words = {
        e.canonical_url: len(e.text.split())
        for e in parse_feed(source.read_bytes(), str(source)).entries
    }
    short = RunContext().min_words
    assert new and all(a["summary"] for a in new)
    for a in new:  # a text shorter than min_words is its own summary, never sent to the LLM
        expected = "llm" if words[a["canonical_url"]] >= short else "extractive"
        assert a["summary_source"] == expected, a["canonical_url"]
    new = [a for a in new if a["summary_source"] == "llm"]
    chats = llm_server.chat_requests()
    assert len(chats) >= len(new)
    systems = {m["content"] for c in chats for m in c["messages"] if m["role"] == "system"}
    assert len(systems) == 1
    for a in new:
        title = a["title"]
        users = [m["content"] for c in chats for m in c["messages"] if m["role"] == "user"]
        holder = [u for u in users if title in u]
        assert holder, title
        slot = holder[0].split("<<<ARTICLE", 1)[1].split("ARTICLE>>>", 1)[0]
        assert title in slot
        assert title not in next(iter(systems))


def _feed(path: Path, link: str, body: str) -> Path:
    path.write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>' + path.stem + "</title>"
        "<link>https://" + path.stem + ".example/</link><item><title>Harbour cranes idle</title>"
        f"<link>{link}</link><guid>{path.stem}-1</guid>"
        "<pubDate>Thu, 26 Nov 2026 12:00:00 +0000</pubDate>"
        f"<description>{body}</description></item></channel></rss>",
        encoding="utf-8",
    )
    return path


@pytest.mark.slow
def test_a_url_in_two_feeds_keeps_its_full_text_whatever_order_they_are_read(
    db, fleet_worker, llm_server, tmp_path: Path
) -> None:
    link = "https://wire.example/cranes"
    full = " ".join(
        f"Sentence {i} says the harbour cranes at Port Calder stood idle for a {i}th day."
        for i in range(12)
    )
    feeds = [
        _feed(tmp_path / "fulltext.xml", link, full),
        _feed(tmp_path / "teasers.xml", link, "Harbour cranes idle… Read more"),
    ]
    llm_server.reset()
    statuses = []
    for run, order in enumerate((feeds, feeds[::-1], feeds)):
        listing = tmp_path / f"list-{run}.txt"
        listing.write_text("\n".join(str(f) for f in order) + "\n")
        digest = run_graph(tmp_path / f"out-{run}", f"run-order-{run}", feeds=listing)
        (article,) = digest["articles"]
        statuses.append(article["status"])
        assert article["summary"] and "idle for a" in article["summary"], run
        if run == 0:
            requests_after_first = len(llm_server.requests)
            with db.connection() as conn:
                stored = conn.execute("SELECT body, feed_id FROM articles").fetchall()
    assert statuses == ["new", "unchanged", "unchanged"]
    assert len(llm_server.requests) == requests_after_first  # no LLM call about it again
    with db.connection() as conn:
        assert conn.execute("SELECT body, feed_id FROM articles").fetchall() == stored
        assert stored[0][0] == full


@pytest.mark.slow
def test_every_entry_read_is_accounted_for_dropped_and_cut_included(
    db, fleet_worker, tmp_path: Path
) -> None:
    feed = tmp_path / "mixed.xml"
    items = "".join(
        f"<item><title>Story {i}</title><link>https://mixed.example/{i}</link><guid>m-{i}</guid>"
        f"<pubDate>Thu, 26 Nov 2026 {10 + i}:00:00 +0000</pubDate><description>"
        + " ".join(f"Fact {i}.{k} about the harbour story number {i}." for k in range(8))
        + "</description></item>"
        for i in range(5)
    )
    items += '<item><title>No link here</title><guid isPermaLink="false">m-nolink</guid></item>'
    items += "<item><title>Script link</title><link>javascript:alert(1)</link></item>"
    channel = f"<channel><title>Mixed</title>{items}</channel>"
    feed.write_text(f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>')
    listing = tmp_path / "list.txt"
    listing.write_text(f"{feed}\n")
    inputs = {"run_id": "run-cut", "feeds_file": str(listing), "as_of": AS_OF, "window_hours": 24,
              "max_articles": 2}  # fmt: skip
    asyncio.run(
        graph.ainvoke(inputs, context=RunContext(out_dir=str(tmp_path / "out"), prefer_llm=False))
    )
    digest = json.loads((tmp_path / "out" / "digest.json").read_text())
    (f,) = digest["feeds"]
    assert sorted((d["title"], d["reason"]) for d in f["dropped"]) == [
        ("No link here", "no link"), ("Script link", "link scheme 'javascript' is not http(s)")
    ]  # fmt: skip
    by_url = {a["canonical_url"]: a for a in digest["articles"]}
    assert len(by_url) == 5  # every article read is in the digest, the cut ones too
    newest = {"https://mixed.example/3", "https://mixed.example/4"}
    for url, a in by_url.items():
        if url in newest:
            assert a["status"] == "new" and a["summary"], url
        else:
            assert a["status"] == "skipped" and "--max-articles 2" in a["error"], url
