"""Full text through the whole pipeline: a feed of teasers whose pages live on a loopback site.

Good pages of several layouts (with and without `<article>`, a French page) each have a
distinctive sentence deep in the body and boilerplate around it: the summarizer's input, as the
loopback LLM server received it, holds the deep sentence and none of the boilerplate. Pages that
cannot be used (robots.txt disallows the path, 404, a PDF) leave their article on its teaser with
the reason, the disallowed path is never requested, and the run completes. Every address here
is 127.0.0.1; the fetcher's refusals of other addresses are specified in test_pages.py.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import get_settings
from graphs.daily import graph
from graphs.state import RunContext
from tasks import robots
from tests.feedserver import FeedServer, feed, status

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "bench" / "pages" / "tune"
GOOD = {"news_article": "with article", "div_soup": "no article element", "french": "French"}
AS_OF = "2026-11-26T23:59:59+00:00"


BYLINE = re.compile(r"^(By|Par|Von|Por)\s", re.IGNORECASE)


def boilerplate(page: str, gold: str) -> list[str]:
    """Visible text runs of the page that are not the article's own text: navigation, cookie
    banners, comments, newsletter boxes, related links, footers (a byline is the article's
    own credit, not page furniture, and the summarizer drops it anyway)."""
    body = re.sub(r"(?is)<(script|style|title|h1)\b.*?</\1>", " ", page)
    runs = [" ".join(html.unescape(t).split()) for t in re.findall(r">([^<]{25,})<", body)]
    norm = " ".join(gold.split())
    return [r for r in runs if r and r not in norm and not BYLINE.match(r)]


def deep_sentence(gold: str) -> str:
    """The last sentence of the article's body."""
    return re.split(r"(?<=[.!?»\"”])\s+", " ".join(gold.split()))[-1]


@pytest.fixture
def full_text(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Full text on for this process (the graph plans it here); robots.txt cache cleared."""
    monkeypatch.setenv("FETCH_FULL_TEXT", "on")
    get_settings.cache_clear()
    robots.clear_local_cache()
    yield
    get_settings.cache_clear()


@pytest.mark.slow
def test_teasers_are_summarized_from_their_pages_and_bad_pages_keep_the_teaser(
    db, fleet_worker, llm_server, full_text, tmp_path: Path
) -> None:
    with FeedServer() as site:
        site.route(
            "/robots.txt", feed(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
        )
        items, links = [], {}
        for name in GOOD:
            body = (PAGES / f"{name}.html").read_bytes()
            links[name] = site.route(
                f"/{name}", feed(body, content_type="text/html; charset=utf-8")
            )
        secret = feed(b"<p>secret</p>", content_type="text/html")
        pdf = status(200, {"Content-Type": "application/pdf"}, b"%PDF-1.7")
        bad = {
            "private": (site.route("/private/story", secret), "robots.txt disallows"),
            "gone": (site.route("/gone", status(404)), "HTTP 404"),
            "pdf": (site.route("/paper.pdf", pdf), "not HTML"),
        }
        for name, link in [*links.items(), *((n, u) for n, (u, _) in bad.items())]:
            items.append(
                f"<item><title>Teaser {name}</title><link>{link}</link><guid>{name}</guid>"
                "<pubDate>Thu, 26 Nov 2026 12:00:00 +0000</pubDate>"
                f"<description>The first lines of the {name} story… Read more</description></item>"
            )
        feed_file = tmp_path / "teasers.xml"
        feed_file.write_text(
            '<?xml version="1.0"?><rss version="2.0"><channel><title>Teasers</title>'
            + "".join(items)
            + "</channel></rss>"
        )
        listing = tmp_path / "feeds.txt"
        listing.write_text(f"{feed_file}\n")
        llm_server.reset()
        inputs = {
            "run_id": "run-pages",
            "feeds_file": str(listing),
            "as_of": AS_OF,
            "window_hours": 24,
        }
        out = tmp_path / "out"
        asyncio.run(graph.ainvoke(inputs, context=RunContext(out_dir=str(out), prefer_llm=True)))
        hits = dict(site.hits)
    digest = json.loads((out / "digest.json").read_text())
    by_title = {a["title"]: a for a in digest["articles"]}
    users = [
        m["content"]
        for c in llm_server.chat_requests()
        for m in c["messages"]
        if m["role"] == "user"
    ]
    for name, layout in GOOD.items():
        a = by_title[f"Teaser {name}"]
        assert (a["status"], a["text_source"], a["text_error"]) == ("new", "page", None), layout
        assert a["summary_source"] == "llm"
        (sent,) = [u for u in users if f"Teaser {name}" in u]
        page = (PAGES / f"{name}.html").read_text(encoding="utf-8")
        gold = (PAGES / f"{name}.txt").read_text(encoding="utf-8")
        assert deep_sentence(gold) in " ".join(sent.split()), layout
        junk = boilerplate(page, gold)
        assert junk and not [j for j in junk if j in " ".join(sent.split())], layout
    for name, (_, reason) in bad.items():
        a = by_title[f"Teaser {name}"]
        assert a["status"] == "new" and a["text_source"] == "feed", name  # never worse
        assert reason in (a["text_error"] or ""), (name, a["text_error"])
    assert hits.get("/private/story", 0) == 0
