"""Publishing: digest.html, digest.xml (Atom), the webhook, and a day published twice.

The renderers are checked on a constructed digest (markup in titles, hostile links); the rest
runs the daily graph on three small feeds with the session's worker process, where three
outlets cover one new event (so it trends) and a loopback HTTP server plays the webhook.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import subprocess
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import feedparser
import pytest

import prompts
from core.settings import get_settings
from graphs.daily import graph
from graphs.state import RunContext
from tasks.render import render_atom, render_html, render_markdown, slack_payload
from tests.conftest import truncate_all

AS_OF = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ATOM = "{http://www.w3.org/2005/Atom}"
FILES = ("digest.json", "digest.md", "digest.html", "digest.xml")
HOSTILE_LABEL = '<script>alert("x")</script> Bridge closes & "ferries" <b>double</b>'
HOSTILE_TITLE = "<img src=x onerror=alert(1)> Ferry fares rise"

PIER = {  # one event, three outlets: shared names and figures, each in its own words
    "harbour-post": (
        "Pier 9 collapses at Saltmere harbour, halting the Gullhaven ferry",
        "A 40-metre section of Pier 9 at Saltmere harbour collapsed into the water before dawn "
        "on Wednesday, halting the Saltmere to Gullhaven ferry. Harbour master Ottilie Brandvold "
        "said nobody was hurt and divers found rotted pilings. The Saltmere Port Authority put "
        "repairs at $6.3 million and said sailings would move to the Pier 4 terminal on Friday.",
    ),
    "coast-wire": (
        "Saltmere ferry service suspended after pier gives way",
        "Ferry service between Saltmere and Gullhaven was suspended on Wednesday after part of "
        "Pier 9 gave way overnight. Harbour master Ottilie Brandvold said the 40-metre section "
        "fell when rotted pilings failed and that no one was injured. The Saltmere Port "
        "Authority estimates the repair bill at $6.3 million; boats will use Pier 4 from Friday.",
    ),
    "gullhaven-daily": (
        "Gullhaven commuters stranded as Saltmere pier collapse stops ferry",
        "Gullhaven commuters were left without their ferry on Wednesday after a 40-metre stretch "
        "of Pier 9 in Saltmere collapsed. Harbour master Ottilie Brandvold blamed rotted pilings "
        "and said nobody was hurt. The Saltmere Port Authority said repairs would cost $6.3 "
        "million and that sailings resume from Pier 4 on Friday, with longer crossings.",
    ),
}
SINGLES = {  # one story per outlet, nothing in common
    "harbour-post": (
        "Library hours rise 5 < 6 & readers cheer",
        "The Saltmere public library will open six days a week instead of five from December, "
        "librarian Maud Esterhazy said, after the council found money for two more staff. Evening "
        "hours on Thursday return for students preparing for winter exams this year.",
    ),
    "coast-wire": (
        "Lindqvist Orchards wins regional cider award",
        "Lindqvist Orchards of Brackenmoor took first prize for its dry cider at the regional "
        "agricultural show, beating forty entrants. Owner Halvard Lindqvist said the warm "
        "autumn gave unusually sweet apples and that the farm would double production next year.",
    ),
    "gullhaven-daily": (
        "Gullhaven school choir to sing at national final",
        "The Gullhaven Primary School choir has qualified for the national schools final in "
        "Marlow after winning the county round with a programme of sea shanties. Music teacher "
        "Ingrid Sollie said the thirty-two singers had rehearsed every lunchtime since September.",
    ),
}


# --- helpers ---------------------------------------------------------------------------


def write_feeds(folder: Path) -> Path:
    """Three RSS 2.0 feeds (paths in a feed list): the pier story in each, plus one single."""
    folder.mkdir(parents=True, exist_ok=True)
    listing = []
    for n, outlet in enumerate(PIER):
        items = []
        for k, (slug, (title, body)) in enumerate(
            (("pier", PIER[outlet]), ("single", SINGLES[outlet]))
        ):
            when = format_datetime(AS_OF - timedelta(hours=3 + n + 5 * k))
            link = f"https://{outlet}.example/news/{slug}"
            items.append(
                f"<item><title>{escape(title)}</title><link>{link}</link><guid>{link}</guid>"
                f"<pubDate>{when}</pubDate><description>{escape(body)}</description></item>"
            )
        path = folder / f"{outlet}.xml"
        path.write_text(
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{outlet}</title><link>https://{outlet}.example/</link>"
            f"<description>{outlet}</description>{''.join(items)}</channel></rss>",
            encoding="utf-8",
        )
        listing.append(str(path))
    feeds = folder / "feeds.txt"
    feeds.write_text("\n".join(listing) + "\n")
    return feeds


class Webhook:
    """A loopback HTTP server that records each POST and answers from a script of statuses;
    with `down_after`, it stops listening after that many requests (connections refused)."""

    def __init__(self, statuses: list[int] | None = None, down_after: int | None = None) -> None:
        self.statuses = list(statuses or [])
        self.down_after = down_after
        self.received: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append(
                    {"content_type": self.headers.get("Content-Type"), "json": json.loads(body)}
                )
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"server error")
                if hook.down_after and len(hook.received) >= hook.down_after:
                    threading.Thread(target=hook.stop, daemon=True).start()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self._stopped = False

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.server.shutdown()
            self.server.server_close()


def run_graph(feeds: Path, out: Path, run_id: str, **ctx: object) -> dict:
    inputs = {
        "run_id": run_id,
        "feeds_file": str(feeds),
        "as_of": AS_OF.isoformat(),
        "window_hours": 24,
    }
    context = RunContext(out_dir=str(out), prefer_llm=False, **ctx)  # type: ignore[arg-type]
    asyncio.run(graph.ainvoke(inputs, context=context))
    return json.loads((out / "digest.json").read_text())


def digest_rows() -> list[dict]:
    from psycopg.rows import dict_row

    from vectorstore import connection

    with connection() as conn:
        return conn.cursor(row_factory=dict_row).execute("SELECT * FROM digests").fetchall()


def truncate() -> None:
    from vectorstore import connection

    with connection() as conn:
        truncate_all(conn)


@pytest.fixture
def webhook_env(monkeypatch: pytest.MonkeyPatch):
    """Point DIGEST_WEBHOOK_URL at a server for this test (settings re-read, then restored)."""

    def use(url: str) -> None:
        monkeypatch.setenv("DIGEST_WEBHOOK_URL", url)
        get_settings.cache_clear()

    yield use
    monkeypatch.delenv("DIGEST_WEBHOOK_URL", raising=False)
    get_settings.cache_clear()


def make_digest(label: str = "Bridge closes", title: str = "Bridge closes at dawn",
                url: str = "https://ledger.example/bridge") -> dict:  # fmt: skip
    """A digest as build_digest makes it: one trending story, one other."""
    article = {
        "url": url, "canonical_url": url, "title": title, "feed_url": "https://ledger.example/rss",
        "published": "2026-11-26T09:00:00Z", "first_seen": "2026-11-26T09:05:00Z",
        "in_window": True, "status": "new", "duplicate_of": None, "story_id": "s-1",
        "summary": f"Summary of {title}", "summary_source": "extractive", "error": None,
    }  # fmt: skip
    other = {**article, "url": "https://x.example/o", "canonical_url": "https://x.example/o",
             "title": "Other news", "story_id": "s-2"}  # fmt: skip
    stories = [
        {"id": "s-1", "label": label, "synthesis": f"What happened: {title}",
         "keywords": ["Halvorsen", "<Okafor>"], "article_urls": [url], "sources": ["a", "b", "c"],
         "trend_score": 5.0, "is_trending": True, "label_source": "offline",
         "signals": {"sources": 3, "novelty": 0.8},
         "articles": [{"url": url, "title": title, "source": "Ledger <Daily>",
                       "published": "2026-11-26T09:00:00Z"}]},
        {"id": "s-2", "label": "Other news", "synthesis": None, "keywords": [],
         "article_urls": [other["url"]], "sources": ["a"], "trend_score": 0.5,
         "is_trending": False, "label_source": "offline", "signals": {}},
    ]  # fmt: skip
    return {
        "run_id": "run-1", "mode": "embedded", "modes": {"llm": "offline"},
        "as_of": "2026-11-26T12:00:00Z", "window_hours": 24,
        "generated_at": "2026-11-26T12:01:00Z",
        "feeds": [{"url": "feeds/a.xml", "status": "ok", "error": None, "articles": 2}],
        "articles": [article, other], "stories": stories,
        "counts": {"feeds": 1, "articles": 2, "in_window": 2, "stories": 2, "trending": 1},
    }  # fmt: skip


def check_atom(xml_text: str, digest: dict) -> feedparser.FeedParserDict:
    """The Atom document is well-formed, has the required elements, and parses."""
    root = ET.fromstring(xml_text.encode())
    assert root.tag == f"{ATOM}feed"
    for tag in ("id", "title", "updated", "author"):
        assert root.find(f"{ATOM}{tag}") is not None, tag
    assert root.find(f"{ATOM}author/{ATOM}name").text
    for el in (root.find(f"{ATOM}updated"), *root.iter(f"{ATOM}updated")):
        datetime.fromisoformat(el.text.replace("Z", "+00:00"))  # RFC 3339
    entries = root.findall(f"{ATOM}entry")
    hot = [s for s in digest["stories"] if s["is_trending"]]
    assert len(entries) == len(hot)
    for entry in entries:
        for tag in ("id", "title", "updated", "summary"):
            assert (entry.find(f"{ATOM}{tag}").text or "").strip(), tag
        link = entry.find(f"{ATOM}link[@rel='alternate']")
        assert link is not None and link.get("href", "").startswith(("https://", "digest.html#"))
    parsed = feedparser.parse(xml_text.encode())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert len(parsed.entries) == len(hot)
    return parsed


# --- renderers on a constructed digest -------------------------------------------------


def test_markup_in_titles_shows_as_text_in_html_and_atom() -> None:
    digest = make_digest(HOSTILE_LABEL, HOSTILE_TITLE, "javascript:alert(1)")
    page = render_html(digest)
    for raw in ("<script", "<img", "<b>", 'href="javascript', "<Okafor>", "<Daily>"):
        assert raw not in page, raw
    assert html.escape(HOSTILE_LABEL) in page
    assert html.escape(HOSTILE_TITLE) in page
    atom = render_atom(digest)
    assert "<script" not in atom and "<img" not in atom
    parsed = check_atom(atom, digest)
    assert parsed.entries[0].title == HOSTILE_LABEL
    assert "javascript:" not in json.dumps(slack_payload(digest))
    md = render_markdown(digest)
    assert not re.search(r"(?<!\\)<(script|img|b>)", md)  # Markdown escapes: \<script\>


def test_the_html_page_is_self_contained_and_fits_a_phone() -> None:
    page = render_html(make_digest())
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "<style>" in page and "max-width" in page
    for external in ("<script", "<link", "<img", "@import", "url(", "src="):
        assert external not in page, external
    assert "default-src 'none'" in page  # the browser itself refuses anything external


def test_the_slack_message_has_text_blocks_and_escaped_labels() -> None:
    body = slack_payload(make_digest(HOSTILE_LABEL))
    assert body["text"].startswith("News digest 2026-11-26")
    assert body["blocks"][0]["type"] == "header"
    section = body["blocks"][1]["text"]["text"]
    assert "&lt;script&gt;" in section and "<script" not in section
    assert section.startswith("*<https://ledger.example/bridge|")


# --- the daily graph end to end --------------------------------------------------------


@pytest.fixture(scope="module")
def published(fleet_worker, llm_server, tmp_path_factory: pytest.TempPathFactory):
    """Run the graph twice for the same day with a webhook and LLM labels; keep what it made."""
    truncate()
    tmp = tmp_path_factory.mktemp("published")
    feeds = write_feeds(tmp / "feeds")
    hook = Webhook()
    llm_server.reset()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGEST_WEBHOOK_URL", hook.url)
        get_settings.cache_clear()
        try:
            first = run_graph(feeds, tmp / "first", "run-pub-1", label_with_llm=True)
            first_rows = digest_rows()
            second = run_graph(feeds, tmp / "out", "run-pub-2", label_with_llm=True)
            rows = digest_rows()
        finally:
            get_settings.cache_clear()
            hook.stop()
    return {
        "out": tmp / "out", "first": first, "digest": second, "first_rows": first_rows,
        "rows": rows, "hook": hook.received, "chats": llm_server.chat_requests(),
    }  # fmt: skip


def test_three_outlets_on_one_new_event_make_one_trending_story(published) -> None:
    digest = published["digest"]
    hot = [s for s in digest["stories"] if s["is_trending"]]
    assert len(hot) == 1
    pier_urls = {f"https://{o}.example/news/pier" for o in PIER}
    assert set(hot[0]["article_urls"]) == pier_urls
    assert len(hot[0]["sources"]) == 3
    assert len(digest["stories"]) == 4  # the pier, and one single per outlet
    assert digest["counts"]["stories"] == 4 and digest["counts"]["trending"] == 1
    in_window = {a["canonical_url"]: a["story_id"] for a in digest["articles"] if a["in_window"]}
    assert len(in_window) == 6 and all(in_window.values())
    assert [s["id"] for s in published["first"]["stories"]] == [s["id"] for s in digest["stories"]]


def test_trending_stories_are_labelled_by_the_llm_from_their_summaries(published) -> None:
    hot = next(s for s in published["digest"]["stories"] if s["is_trending"])
    assert hot["label_source"] == "llm" and hot["synthesis"]
    label_chats = [
        c for c in published["chats"]
        if any(m["content"] == prompts.render("label_system") for m in c["messages"])
    ]  # fmt: skip
    # Only the trending story is labelled, once: the second run over the same texts reuses it.
    assert len(label_chats) == 1
    user = next(m["content"] for m in label_chats[0]["messages"] if m["role"] == "user")
    slot = user.split(prompts.OPEN, 1)[1].split(prompts.CLOSE, 1)[0]
    assert "Ottilie Brandvold" in slot  # the summaries travel inside the slot
    assert hot["label"] == " ".join(slot.split()[:6]).rstrip(".,;:!?")


def test_the_digest_files_are_written_and_the_atom_feed_validates(published) -> None:
    out, digest = published["out"], published["digest"]
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*.tmp"))
    parsed = check_atom((out / "digest.xml").read_text(), digest)
    hot = next(s for s in digest["stories"] if s["is_trending"])
    assert parsed.entries[0].title == hot["label"]
    assert parsed.entries[0].id.endswith(hot["id"])
    page = (out / "digest.html").read_text()
    assert "Library hours rise 5 &lt; 6 &amp; readers cheer" in page
    assert "5 < 6" not in page


def test_rendered_html_shows_the_trending_labels_in_headless_chromium(published) -> None:
    exe = shutil.which("chromium")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    page = published["out"] / "digest.html"
    proc = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert '<section id="trending">' in dom
    trending_part = dom.split('<section id="trending">', 1)[1].split("</section>", 1)[0]
    hot = [s for s in published["digest"]["stories"] if s["is_trending"]]
    assert hot
    for s in hot:
        assert f'<h3 class="label">{html.escape(s["label"], quote=False)}</h3>' in trending_part


def test_the_webhook_gets_one_slack_message_and_the_same_day_is_replaced(published) -> None:
    assert len(published["hook"]) == 1  # the second, unchanged publication is not re-sent
    post = published["hook"][0]
    assert post["content_type"] == "application/json"
    assert set(post["json"]) == {"text", "blocks"}
    hot = next(s for s in published["digest"]["stories"] if s["is_trending"])
    assert hot["label"] in json.dumps(post["json"]["blocks"], ensure_ascii=False)
    [first], [row] = published["first_rows"], published["rows"]
    assert first["run_id"] == "run-pub-1" and first["webhook"]["status"] == "sent"
    assert row["run_id"] == "run-pub-2" and row["day"] == AS_OF.date()
    assert row["webhook"]["status"] == "unchanged"


def test_a_failing_webhook_does_not_block_the_files_and_is_recorded(
    db, fleet_worker, webhook_env, tmp_path: Path
) -> None:
    hook = Webhook(statuses=[500], down_after=1)  # a 500, then nobody listening
    webhook_env(hook.url)
    try:
        digest = run_graph(write_feeds(tmp_path / "feeds"), tmp_path / "out", "run-hook-down",
                           label_with_llm=False)  # fmt: skip
    finally:
        hook.stop()
    for name in FILES:
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    assert len(hook.received) == 1
    [row] = digest_rows()
    outcome = row["webhook"]
    assert outcome["status"] == "failed" and outcome["attempts"] == 3
    assert "Connect" in outcome["error"]
    assert "secret" not in json.dumps(outcome)  # the webhook URL is never recorded
    hot = next(s for s in digest["stories"] if s["is_trending"])
    assert hot["label_source"] == "offline"
    assert hot["label"] in {t for t, _ in PIER.values()}  # the most representative headline
    assert "Brandvold" in hot["keywords"]


def test_an_unusable_llm_label_falls_back_to_the_offline_one(
    db, fleet_worker, llm_server, tmp_path: Path
) -> None:
    llm_server.reset()
    llm_server.responder = lambda body: "I would call this story: the pier one."
    try:
        digest = run_graph(write_feeds(tmp_path / "feeds"), tmp_path / "out", "run-llm-junk",
                           label_with_llm=True)  # fmt: skip
    finally:
        llm_server.responder = None
    hot = next(s for s in digest["stories"] if s["is_trending"])
    assert llm_server.chat_requests()
    assert hot["label_source"] == "offline"
    assert hot["label"] in {t for t, _ in PIER.values()}
