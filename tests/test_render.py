"""The digest renderers on hand-made digests: copies, summaries, timelines, failures, escaping.

No services: each test builds a `digest.json` document as the pipeline does (or an older one,
without the newer fields) and reads what Markdown, HTML, Atom and Slack make of it. Markup is
checked by parsing: the HTML with html.parser, the Markdown rendered by markdown-it (CommonMark,
raw HTML allowed, so anything that escaped our escaping shows up as a tag), the Atom as XML.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import pytest

from tasks.escape import md_text, safe_link, slack_text
from tasks.render import render_atom, render_html, render_markdown, slack_payload

ATOM = "{http://www.w3.org/2005/Atom}"
KEPT = "https://harbour.example/pier"
OTHER_TEXT = "https://ledger.example/pier-analysis"
SUMMARY = "Pier 9 at Saltmere collapsed overnight; ferries move to Pier 4 on Friday."
TIMELINE_LABEL = "independent texts per day: 0 0 1 0 0 0 0 | 7 today"
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "h3", "p",
    "section", "article", "ul", "li", "a", "span", "time", "figure", "figcaption", "svg", "rect",
    "details", "summary", "div", "table", "thead", "tbody", "tr", "th", "td", "footer",
}  # fmt: skip


def article(url: str, title: str, source: str, **extra: object) -> dict:
    """One entry of digest["articles"] with the newer fields."""
    return {
        "url": url, "canonical_url": url, "title": title, "feed_url": f"{url}/rss",
        "source": source, "published": "2026-11-26T09:00:00Z",
        "first_seen": "2026-11-26T09:05:00Z", "in_window": True, "status": "new",
        "duplicate_of": None, "story_id": "s-1", "summary": f"Summary of {title}",
        "summary_source": "extractive", "error": None, "text_source": "page", "text_error": None,
        **extra,
    }  # fmt: skip


def make_digest() -> dict:
    """A trending story of two independent texts (one carried by two more outlets), a story that
    does not trend, a failed article and a feed with entries dropped for want of a link."""
    copies = [("https://coast.example/pier", "Coast Wire"),
              ("https://gull.example/p", "Gull Daily")]  # fmt: skip
    articles = [
        article(KEPT, "Pier 9 collapses at Saltmere", "Harbour Post", summary=SUMMARY),
        *(
            article(
                url,
                "Pier 9 collapses at Saltmere",
                src,
                status=status,
                duplicate_of=KEPT,
                summary=SUMMARY,
            )  # fmt: skip
            for (url, src), status in zip(copies, ("duplicate", "near_duplicate"))
        ),
        article(OTHER_TEXT, "Why the pilings rotted", "Ledger"),
        article(
            "https://choir.example/final", "Choir reaches the final", "Gull Daily", story_id="s-2"
        ),  # fmt: skip
        article(
            "https://broken.example/x",
            "A page that would not load",
            "Ledger",
            status="failed",
            error="HTTP 404 from the article page",
            story_id=None,
        ),  # fmt: skip
    ]
    timeline = [
        {"start": f"2026-11-{d:02d}T12:00:00Z", "end": f"2026-11-{d + 1:02d}T12:00:00Z",
         "texts": n, "window": d == 25}
        for d, n in zip(range(18, 26), (0, 0, 1, 0, 0, 0, 0, 7))
    ]  # fmt: skip
    kept = {
        "url": KEPT, "title": "Pier 9 collapses at Saltmere", "source": "Harbour Post",
        "published": "2026-11-26T09:00:00Z", "summary": SUMMARY,
        "also_in": [{"source": s, "url": u, "title": "Pier 9 collapses at Saltmere"}
                    for u, s in copies],
    }  # fmt: skip
    analysis = {
        "url": OTHER_TEXT, "title": "Why the pilings rotted", "source": "Ledger",
        "published": "2026-11-26T10:00:00Z", "summary": "Engineers blame salt.", "also_in": [],
    }  # fmt: skip
    stories = [
        {"id": "s-1", "label": "Saltmere pier collapse", "synthesis": SUMMARY, "summary": SUMMARY,
         "keywords": ["Saltmere", "Pier 9"], "sources": ["a", "b", "c", "d"],
         "article_urls": [KEPT, OTHER_TEXT, *(u for u, _ in copies)], "independent_texts": 2,
         "trend_score": 5.0, "is_trending": True, "label_source": "offline",
         "signals": {"novelty": 0.9}, "timeline": timeline, "articles": [kept, analysis]},
        {"id": "s-2", "label": "Choir reaches the final", "synthesis": None,
         "summary": "The Gullhaven choir sings in Marlow next month.", "keywords": [],
         "sources": ["d"], "article_urls": ["https://choir.example/final"],
         "independent_texts": 1, "trend_score": 0.4, "is_trending": False,
         "label_source": "offline", "signals": {}, "timeline": [],
         "articles": [{"url": "https://choir.example/final", "title": "Choir reaches the final",
                       "source": "Gull Daily", "published": "2026-11-26T08:00:00Z",
                       "summary": "The Gullhaven choir sings in Marlow next month.",
                       "also_in": []}]},
    ]  # fmt: skip
    feeds = [
        {"url": "feeds/harbour.xml", "status": "ok", "error": None, "articles": 3,
         "dropped": [{"title": f"Untitled {i}", "guid": f"g{i}", "reason": "no link"}
                     for i in range(3)]},
        {"url": "feeds/ledger.xml", "status": "ok", "error": None, "articles": 2, "dropped": []},
    ]  # fmt: skip
    return {
        "run_id": "run-1", "mode": "embedded", "modes": {"llm": "offline"},
        "as_of": "2026-11-26T12:00:00Z", "window_hours": 24,
        "generated_at": "2026-11-26T12:01:00Z", "feeds": feeds, "articles": articles,
        "stories": stories,
        "counts": {"feeds": 2, "articles": 6, "in_window": 6, "stories": 2, "trending": 1},
    }  # fmt: skip


class Page(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML document."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def hrefs(self) -> list[str]:
        return [a["href"] for t, a in self.tags if t == "a"]


def markdown_as_html(md: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")  # installed with rich
    return markdown_it.MarkdownIt("commonmark").enable("table").render(md)


def section(md: str, heading: str) -> str:
    return md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


# --- copies, summaries, timelines, failures --------------------------------------------


def test_copies_are_listed_as_also_in_under_the_kept_text_not_as_items() -> None:
    digest = make_digest()
    page = Page(render_html(digest))
    assert page.hrefs().count(KEPT) == 1
    assert {"https://coast.example/pier", "https://gull.example/p"} <= set(page.hrefs())
    html_doc = render_html(digest)
    trending_part = html_doc.split('<section id="trending">')[1].split("</section>")[0]
    listed = trending_part.split('<ul class="articles">')[1]
    assert listed.count("<li>") == 2  # two texts; the copies are not items
    assert 'also in <a href="https://coast.example/pier"' in trending_part
    assert "2 sources · 2 copies" in trending_part  # independent texts, not 4 outlets
    md = render_markdown(digest)
    hot = section(md, "Trending")
    assert hot.count("- [") == 2 and hot.count("Pier 9 collapses at Saltmere") == 1
    assert "(also in [Coast Wire](<https://coast.example/pier>), [Gull Daily](" in hot
    assert "2 sources · 2 copies" in hot
    slack = json.dumps(slack_payload(digest))
    assert "2 sources" in slack


def test_every_story_shows_its_summary_once() -> None:
    digest = make_digest()
    md = render_markdown(digest)
    assert section(md, "Trending").count(md_text(SUMMARY)) == 1  # not again under the article
    assert md_text("Engineers blame salt.") in section(md, "Trending")
    others = section(md, "Other stories").strip().splitlines()
    assert others == [
        "- **[Choir reaches the final](<https://choir.example/final>)** — "
        + md_text("The Gullhaven choir sings in Marlow next month.")
    ]
    page = render_html(digest)
    assert page.count(SUMMARY) == 1
    others_html = page.split('<section id="stories">')[1].split("</section>")[0]
    assert "Choir reaches the final</a> — The Gullhaven choir sings in Marlow next month." in (
        others_html
    )
    root = ET.fromstring(render_atom(digest).encode())
    [entry] = root.findall(f"{ATOM}entry")  # only the trending story
    assert entry.find(f"{ATOM}summary").text == SUMMARY
    assert SUMMARY in slack_payload(digest)["blocks"][1]["text"]["text"]


def test_a_story_without_a_summary_gets_the_first_sentence_of_its_article() -> None:
    digest = make_digest()
    choir = digest["stories"][1]
    del choir["summary"]
    choir["articles"][0]["summary"] = "The choir won the county round. It sings in Marlow. " * 3
    md_line = section(render_markdown(digest), "Other stories").strip()
    assert md_line.endswith("/final>)** — The choir won the county round.")
    page = render_html(digest)
    assert "</a> — The choir won the county round.</li>" in page


def test_a_trending_story_shows_its_timeline_as_an_inline_svg() -> None:
    page = Page(render_html(make_digest()))
    svgs = [a for t, a in page.tags if t == "svg"]
    assert len(svgs) == 1  # the trending story only
    assert svgs[0]["role"] == "img" and svgs[0]["aria-label"] == TIMELINE_LABEL
    assert TIMELINE_LABEL in page.text  # the svg's <title>
    rects = [a for t, a in page.tags if t == "rect"]
    assert len(rects) == 8
    assert [r.get("class") for r in rects] == [None] * 7 + ["now"]
    heights = [int(r["height"]) for r in rects]
    assert heights[-1] == max(heights) and heights[2] > heights[0] > 0
    assert not [t for t, _ in page.tags if t not in PAGE_TAGS]  # still no script, img, link
    assert md_text(TIMELINE_LABEL) in render_markdown(make_digest())


def test_chromium_draws_the_chart_without_any_content_security_policy_violation(
    tmp_path: Path,
) -> None:
    exe = shutil.which("chromium")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    page = tmp_path / "digest.html"
    page.write_text(render_html(hostile_digest()), encoding="utf-8")
    proc = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Content Security Policy" not in proc.stderr  # a blocked asset or style is logged
    dom = Page(proc.stdout)
    assert [a["aria-label"] for t, a in dom.tags if t == "svg"] == [TIMELINE_LABEL]
    assert len([t for t, _ in dom.tags if t == "rect"]) == 8
    assert not [t for t, _ in dom.tags if t in ("script", "img", "iframe")]


def test_failed_articles_and_dropped_entries_are_listed() -> None:
    digest = make_digest()
    md = render_markdown(digest)
    assert md.rstrip().endswith(
        "- [A page that would not load](<https://broken.example/x>): HTTP 404 from the article page"
    )
    assert "| feeds/harbour.xml | ok | 3 |  | 3 entries dropped: no link |" in md
    page = render_html(digest)
    failed = page.split('<section id="failed">')[1].split("</section>")[0]
    assert '<a href="https://broken.example/x"' in failed and "HTTP 404 from the article" in failed
    assert page.index('id="failed"') > page.index('id="feeds"')
    assert "<td>3 entries dropped: no link</td>" in page


@pytest.mark.parametrize("story_articles", ["absent", "without copies' fields"])
def test_an_older_digest_without_the_new_fields_still_renders(story_articles: str) -> None:
    digest = make_digest()
    titles = {a["canonical_url"]: a["title"] for a in digest["articles"]}
    for a in digest["articles"]:
        for k in ("source", "text_source", "text_error"):
            a.pop(k)
    for s in digest["stories"]:
        for k in ("summary", "independent_texts", "timeline"):
            s.pop(k)
        s.pop("articles")  # the oldest: titles come from the run's articles
        if story_articles != "absent":  # as build_digest made them: every article of the story
            s["articles"] = [
                {"url": u, "title": titles[u], "source": "Outlet", "published": None}
                for u in s["article_urls"]
            ]
    for f in digest["feeds"]:
        f.pop("dropped")
    md = render_markdown(digest)
    hot = section(md, "Trending")
    assert hot.count("- [") == 2  # copies found through duplicate_of, not listed as items
    assert "also in" in hot and "4 sources" in hot
    page = render_html(digest)
    assert "<svg" not in page and "Pier 9 collapses at Saltmere" in page
    assert render_atom(digest) and slack_payload(digest)["blocks"]


# --- each format escapes for itself ----------------------------------------------------

HOSTILE_TITLE = "<!channel> <script>alert(1)</script>"
SPACE_URL = "https://x.example/a b<img src=x>"
HOSTILE_LABEL = "*bold* _it_ ~gone~ <https://evil.example|Click> <@U123> @here"
BAD_URLS = ("javascript:alert(1)", "data:text/html,<script>alert(1)</script>")


def hostile_digest() -> dict:
    digest = make_digest()
    hot, other = digest["stories"]
    hot["label"] = HOSTILE_LABEL
    hot["summary"] = (
        "1) Not a list # Not a heading & <b>not bold</b> "
        "![x](https://t.example/p.png) www.a.example"
    )
    hot["keywords"] = ["<Okafor>", "a|b"]
    kept, analysis = hot["articles"]
    kept["title"] = HOSTILE_TITLE
    kept["url"] = SPACE_URL
    kept["also_in"][0]["url"] = BAD_URLS[0]
    kept["also_in"][1]["source"] = "Gull](javascript:alert(1)) <!here>"
    analysis["url"] = BAD_URLS[1]
    analysis["title"] = "Read [more](javascript:alert(1))"
    analysis["source"] = "1. <iframe src=//evil.example>"
    other["label"] = "- <!everyone> `code` | pipe"
    other["articles"][0]["url"] = "https://choir.example/a\nb"
    digest["feeds"][0]["url"] = "feeds/<img src=x onerror=alert(1)>.xml"
    digest["feeds"][0]["dropped"][0]["reason"] = "<script>x</script>"
    digest["articles"][-1]["error"] = "<!channel> 500 <b>oops</b>"
    return digest


SAFE_SPACE_URL = "https://x.example/a%20b%3Cimg%20src=x%3E"


def test_safe_link_keeps_http_only_and_encodes_what_no_format_tolerates() -> None:
    assert safe_link(SPACE_URL) == (SAFE_SPACE_URL, None)
    assert safe_link("https://a.example/p?q=1&r=%zz|x") == (
        "https://a.example/p?q=1&r=%25zz%7Cx",
        None,
    )
    for bad in (*BAD_URLS, "//evil.example/x", "/relative", "https://a.example/\nx", "", None):
        url, reason = safe_link(bad)
        assert url is None and reason, bad


def test_html_has_only_our_tags_and_http_links() -> None:
    doc = render_html(hostile_digest())
    page = Page(doc)
    assert not [t for t, _ in page.tags if t not in PAGE_TAGS]
    for tag, attrs in page.tags:
        assert not [k for k in attrs if k.startswith("on") or k == "src"], (tag, attrs)
    assert page.hrefs() and all(h.startswith("https://") for h in page.hrefs())
    assert SAFE_SPACE_URL in page.hrefs()
    text = "".join(page.text)
    assert HOSTILE_TITLE in text and HOSTILE_LABEL in text  # shown as written
    links_left_out = doc.split('<section id="unlinked">')[1]
    assert "javascript: link is not http(s)" in links_left_out
    assert "data: link is not http(s)" in links_left_out
    assert "control character in the link" in links_left_out


def test_markdown_renders_to_only_our_markup_and_links() -> None:
    md = render_markdown(hostile_digest())
    ours = re.compile(r"\]\(<[^<>\n]*>\)")
    bare = ours.sub("", md)
    assert not re.search(r"(?<!\\)[<>]", bare.replace("\n> ", "\n")), "raw < or > outside links"
    assert not re.search(r"(?<!\\)\]\(", bare)
    assert not re.search(r"(?<!\\)://|(?<!\\)www\.", bare.replace("(<", ""))
    page = Page(markdown_as_html(md))
    allowed = {"h1", "h2", "h3", "p", "ul", "li", "a", "em", "strong", "br", "table", "thead",
               "tbody", "tr", "th", "td"}  # fmt: skip
    assert {t for t, _ in page.tags} <= allowed
    assert set(page.hrefs()) == {
        SAFE_SPACE_URL, "https://gull.example/p", "https://broken.example/x"
    }  # fmt: skip
    text = "".join(page.text)
    assert HOSTILE_TITLE in text and HOSTILE_LABEL in text
    assert "1) Not a list # Not a heading & <b>not bold</b> ![x](https://t.example/p.png)" in text
    assert "- <!everyone> `code` | pipe" in text


@pytest.mark.parametrize(
    "text", ["- item", "+ item", "1. item", "2) item", "# heading", "> quote", "===", "---",
             "    code", "<div>x</div>", "&amp; &#60;", "a\n\n- b", "$x^2$", "x@y.example"],
)  # fmt: skip
def test_markdown_text_is_one_plain_paragraph(text: str) -> None:
    page = Page(markdown_as_html(md_text(text)))
    assert [t for t, _ in page.tags] == ["p"]
    assert "".join(page.text).strip() == " ".join(text.split())


def test_slack_text_never_holds_a_mention_or_a_link_of_its_own() -> None:
    body = slack_payload(hostile_digest())
    texts = [b["text"] for b in body["blocks"][1:] if b["type"] == "section"]
    texts += [e for b in body["blocks"] if b["type"] == "context" for e in b["elements"]]
    for t in texts:
        assert t["type"] == "mrkdwn" and t["verbatim"] is True
        links = re.findall(r"<[^>]*>", t["text"])
        assert all(re.fullmatch(r"<https?://[^\s|<>]+\|[^<>]*>", x) for x in links), links
    section_text = texts[0]["text"]
    assert section_text.startswith(f"*<{SAFE_SPACE_URL}|")
    assert "<!" not in json.dumps(body) and "<@" not in json.dumps(body)
    assert "@here" not in section_text and "@\u200bhere" in section_text
    assert not re.search(r"[*_~`]", section_text.split("|", 1)[1].split(">", 1)[0])
    assert slack_text("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


def test_atom_parses_and_links_only_to_http() -> None:
    digest = hostile_digest()
    xml_text = render_atom(digest)
    root = ET.fromstring(xml_text.encode())
    hrefs = [el.get("href") for el in root.iter(f"{ATOM}link")]
    assert [h for h in hrefs if not h.startswith("digest.html")]
    for h in hrefs:
        assert h.startswith(("https://", "digest.html")) and not re.search(r"[\s<>\"]", h), h
    assert SAFE_SPACE_URL in hrefs and not [h for h in hrefs if "javascript" in h or "data:" in h]
    [entry] = root.findall(f"{ATOM}entry")
    assert entry.find(f"{ATOM}title").text == HOSTILE_LABEL
    assert entry.find(f"{ATOM}summary").text == digest["stories"][0]["summary"]
    parsed = feedparser.parse(xml_text.encode())
    assert not parsed.bozo and parsed.entries[0].title == HOSTILE_LABEL


def test_renderers_do_not_change_the_digest() -> None:
    digest = hostile_digest()
    before = copy.deepcopy(digest)
    render_markdown(digest), render_html(digest), render_atom(digest), slack_payload(digest)
    assert digest == before
