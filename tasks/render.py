"""Rendering of a built digest: Markdown, self-contained HTML, Atom, and a Slack message.

Each function takes the `digest.json` document and returns text (or, for Slack, the JSON body);
none reads the database, writes a file or talks to the network. Every piece of article text is
untrusted: it is escaped for its format (HTML entities, XML text nodes, Slack's `&<>`, Markdown
punctuation), links are only ever http(s), and the HTML loads nothing from anywhere.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

ATOM_NS = "http://www.w3.org/2005/Atom"
FEED_ID = "urn:agentic-media-lab:digest"
AUTHOR = "Agentic Media Lab"
SLACK_MAX_STORIES = 20  # Slack allows 50 blocks a message
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")


def safe_url(url: str | None) -> str | None:
    """The URL when it is http(s), else None (no javascript:, data: or relative links)."""
    if not url:
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


def trending(digest: dict[str, Any]) -> list[dict[str, Any]]:
    """The digest's trending stories, highest score first."""
    return sorted(
        (s for s in digest["stories"] if s["is_trending"]), key=lambda s: -s["trend_score"]
    )


def story_articles(digest: dict[str, Any], story: dict[str, Any]) -> list[dict[str, Any]]:
    """A story's articles as {url, title, source, published}, with titles from the run's
    articles when the story does not carry them."""
    if story.get("articles"):
        return story["articles"]
    by_url = {a["canonical_url"]: a for a in digest["articles"]}
    out = []
    for url in story["article_urls"]:
        a = by_url.get(url, {})
        out.append(
            {
                "url": url,
                "title": a.get("title") or url,
                "source": a.get("feed_url"),
                "published": a.get("published") or a.get("first_seen"),
            }
        )
    return out


def _day(digest: dict[str, Any]) -> str:
    return str(digest["as_of"])[:10]


# --- Markdown --------------------------------------------------------------------------


def md_escape(text: str | None) -> str:
    """Markdown text that shows as written (markup and link brackets escaped)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text or "").split()))


def render_markdown(digest: dict[str, Any]) -> str:
    """`digest.md`: trending stories first, then every story of the window, then feed health."""
    lines = [
        f"# News digest — {digest['as_of']}",
        "",
        f"Window: {digest['window_hours']} h ending {digest['as_of']} · run `{digest['run_id']}`",
        "Modes: " + "; ".join(f"{k}: {v}" for k, v in digest["modes"].items()),
        "",
    ]
    hot = trending(digest)
    summaries = {a["canonical_url"]: a.get("summary") for a in digest["articles"]}
    sections = [("Trending", hot), ("All stories", digest["stories"])] if hot else []
    sections = sections or [("Stories", digest["stories"])]
    for heading, stories in sections:
        lines += [f"## {heading}", ""]
        if not stories:
            lines += ["_No articles in this window._", ""]
        for s in stories:
            lines.append(f"### {md_escape(s['label'])}")
            if s.get("keywords"):
                lines += ["", "_" + md_escape(", ".join(s["keywords"])) + "_"]
            if s.get("synthesis"):
                lines += ["", md_escape(s["synthesis"])]
            lines.append("")
            for a in story_articles(digest, s):
                url = safe_url(a["url"])
                title = md_escape(a["title"])
                item = f"[{title}](<{url}>)" if url else title
                summary = summaries.get(a["url"])
                lines.append(f"- {item}" + (f" — {md_escape(summary)}" if summary else ""))
            lines.append("")
    lines += ["## Feeds", "", "| feed | status | articles | error |", "|---|---|---|---|"]
    for f in digest["feeds"]:
        lines.append(
            f"| {md_escape(f['url'])} | {f['status']} | {f['articles']} | "
            f"{md_escape(f['error'] or '')} |"
        )
    return "\n".join(lines) + "\n"


# --- HTML ------------------------------------------------------------------------------

_CSS = """
:root{color-scheme:light dark;--fg:#1b1d21;--muted:#5d6470;--bg:#fff;--card:#f5f6f8;
--accent:#b4233c;--line:#dfe2e7}
@media (prefers-color-scheme:dark){:root{--fg:#e8eaee;--muted:#a2a9b4;--bg:#14161a;
--card:#1e2127;--accent:#ff7a8e;--line:#2d3139}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,Helvetica,Arial,sans-serif;-webkit-text-size-adjust:100%}
main{max-width:46rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0 .25rem}h2{font-size:1.2rem;margin:2rem 0 .75rem;
border-bottom:1px solid var(--line);padding-bottom:.25rem}
h3{font-size:1.1rem;margin:0 0 .4rem;line-height:1.3}
.meta,.signals,.src,time,footer{color:var(--muted);font-size:.875rem}
.story{background:var(--card);border-radius:.6rem;padding:.9rem 1rem;margin:0 0 1rem;
border-left:4px solid var(--accent);overflow-wrap:anywhere}
.story p{margin:.3rem 0}
.kw{display:flex;flex-wrap:wrap;gap:.3rem;padding:0;margin:.4rem 0;list-style:none}
.kw li{border:1px solid var(--line);border-radius:1rem;padding:0 .55rem;font-size:.8rem}
.articles{margin:.5rem 0 0;padding-left:1.1rem}.articles li{margin:.25rem 0}
a{color:inherit;text-decoration-color:var(--accent);text-underline-offset:2px}
.others li{margin:.35rem 0;overflow-wrap:anywhere}
.table{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.85rem}
td,th{border-bottom:1px solid var(--line);padding:.3rem .4rem;text-align:left;
vertical-align:top;overflow-wrap:anywhere}
details summary{cursor:pointer;font-weight:600}
footer{margin:2rem 0 1rem}
"""


def _e(text: object) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


def _link(url: str | None, text: str) -> str:
    href = safe_url(url)
    return f'<a href="{_e(href)}" rel="noopener noreferrer">{_e(text)}</a>' if href else _e(text)


def _story_html(digest: dict[str, Any], s: dict[str, Any]) -> str:
    parts = [
        f'<article class="story" id="{_e(s["id"])}">',
        f'<h3 class="label">{_e(s["label"])}</h3>',
    ]
    if s.get("synthesis"):
        parts.append(f'<p class="synthesis">{_e(s["synthesis"])}</p>')
    if s.get("keywords"):
        parts.append(
            '<ul class="kw">' + "".join(f"<li>{_e(k)}</li>" for k in s["keywords"]) + "</ul>"
        )
    sig = s.get("signals") or {}
    facts = [f"{len(s['sources'])} sources", f"{len(s['article_urls'])} articles"]
    if "novelty" in sig:
        facts.append(f"novelty {sig['novelty']:.2f}")
    facts.append(f"score {s['trend_score']:.2f}")
    parts.append(f'<p class="signals">{_e(" · ".join(facts))}</p>')
    items = []
    for a in story_articles(digest, s):
        when = ""
        if a.get("published"):
            shown = str(a["published"])[:16].replace("T", " ")
            when = f' <time datetime="{_e(a["published"])}">{_e(shown)}</time>'
        src = f' <span class="src">{_e(a["source"])}</span>' if a.get("source") else ""
        items.append(f"<li>{_link(a['url'], a['title'])}{src}{when}</li>")
    parts.append('<ul class="articles">' + "".join(items) + "</ul></article>")
    return "\n".join(parts)


def render_html(digest: dict[str, Any]) -> str:
    """`digest.html`: one self-contained page (inline CSS, no script, no external asset)."""
    hot = trending(digest)
    others = [s for s in digest["stories"] if not s["is_trending"]]
    c = digest["counts"]
    body = [
        "<header>",
        f"<h1>News digest — {_e(_day(digest))}</h1>",
        f'<p class="meta">{_e(digest["window_hours"])} h ending {_e(digest["as_of"])} · '
        f"{_e(c['in_window'])} articles · {_e(c['stories'])} stories · "
        f"{_e(c['trending'])} trending</p>",
        "</header>",
        '<section id="trending">',
        "<h2>Trending</h2>",
    ]
    body += [_story_html(digest, s) for s in hot] or ["<p>Nothing is trending in this window.</p>"]
    body.append("</section>")
    if others:
        body += ['<section id="stories">', "<h2>Other stories</h2>", '<ul class="others">']
        for s in others:
            arts = story_articles(digest, s)
            lead = arts[0]["url"] if len(arts) == 1 else None
            extra = (
                f' <span class="src">· {len(s["sources"])} sources</span>'
                if len(s["sources"]) > 1
                else ""
            )
            body.append(f"<li>{_link(lead, s['label'])}{extra}</li>")
        body += ["</ul>", "</section>"]
    ok = sum(f["status"] in ("ok", "not_modified") for f in digest["feeds"])
    body += [
        '<section id="feeds">',
        f"<details><summary>Feeds: {ok} of {len(digest['feeds'])} read</summary>",
        '<div class="table"><table><thead><tr><th>feed</th><th>status</th><th>articles</th>'
        "<th>error</th></tr></thead><tbody>",
    ]
    for f in digest["feeds"]:
        body.append(
            f"<tr><td>{_e(f['url'])}</td><td>{_e(f['status'])}</td><td>{_e(f['articles'])}</td>"
            f"<td>{_e(f['error'] or '')}</td></tr>"
        )
    body += ["</tbody></table></div></details>", "</section>"]
    body.append(
        f"<footer>Run {_e(digest['run_id'])} · generated {_e(digest['generated_at'])}</footer>"
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">\n"
        f"<title>News digest — {_e(_day(digest))}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


# --- Atom ------------------------------------------------------------------------------


def _x(text: object) -> str:
    return _XML_INVALID.sub("", str(text if text is not None else ""))


def _sub(parent: ET.Element, tag: str, text: object = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", {k: _x(v) for k, v in attrs.items()})
    if text is not None:
        el.text = _x(text)
    return el


def render_atom(digest: dict[str, Any]) -> str:
    """`digest.xml`: an Atom 1.0 feed with one entry per trending story.

    Entry ids follow the story id, which is stable across runs, so a reader sees a story that
    trends again as the same entry, updated.
    """
    ET.register_namespace("", ATOM_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _sub(feed, "id", FEED_ID)
    _sub(feed, "title", "News digest")
    _sub(
        feed,
        "subtitle",
        f"Trending stories of the {digest['window_hours']} h ending {digest['as_of']}",
    )
    _sub(feed, "updated", digest["generated_at"])
    _sub(feed, "link", rel="alternate", type="text/html", href="digest.html")
    author = _sub(feed, "author")
    _sub(author, "name", AUTHOR)
    _sub(feed, "generator", AUTHOR)
    for s in trending(digest):
        arts = story_articles(digest, s)
        entry = _sub(feed, "entry")
        _sub(entry, "id", f"urn:agentic-media-lab:story:{s['id']}")
        _sub(entry, "title", s["label"], type="text")
        times = [a["published"] for a in arts if a.get("published")]
        _sub(entry, "updated", max(times) if times else digest["as_of"])
        lead = next((safe_url(a["url"]) for a in arts if safe_url(a["url"])), None)
        # Atom wants an alternate link on an entry without content: the story in digest.html.
        _sub(
            entry, "link", rel="alternate", type="text/html", href=lead or f"digest.html#{s['id']}"
        )
        for a in arts:
            if safe_url(a["url"]) and safe_url(a["url"]) != lead:
                _sub(
                    entry, "link", rel="related", type="text/html", href=a["url"], title=a["title"]
                )
        for k in s.get("keywords") or []:
            _sub(entry, "category", term=k)
        headlines = "; ".join(a["title"] for a in arts)
        summary = s.get("synthesis") or f"{len(s['sources'])} sources: {headlines}"
        _sub(entry, "summary", summary, type="text")
    ET.indent(feed)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="unicode") + "\n"


# --- Slack -----------------------------------------------------------------------------


def slack_escape(text: object) -> str:
    """Slack mrkdwn text: only &, < and > are special."""
    return str(text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(digest: dict[str, Any]) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body: fallback `text` plus Block Kit `blocks`.

    Holds nothing that changes between two publications of the same content (no generation
    time), so an unchanged digest gives an identical body.
    """
    hot = trending(digest)
    day = _day(digest)
    c = digest["counts"]
    text = f"News digest {day}: {len(hot)} trending of {c['stories']} stories"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"News digest — {day}"[:150]}}
    ]
    for s in hot[:SLACK_MAX_STORIES]:
        arts = story_articles(digest, s)
        lead = next((safe_url(a["url"]) for a in arts if safe_url(a["url"])), None)
        title = slack_escape(s["label"]).replace("|", "¦")
        head = f"*<{lead}|{title}>*" if lead else f"*{title}*"
        lines = [head]
        if s.get("synthesis"):
            lines.append(slack_escape(s["synthesis"]))
        lines.append(
            f"_{len(s['sources'])} sources · "
            + slack_escape(", ".join(s.get("keywords") or []))
            + "_"
        )
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}
        )
    if not hot:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "Nothing is trending in this window."},
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"{c['in_window']} articles · {c['stories']} stories · "
                    f"{digest['window_hours']} h ending {slack_escape(digest['as_of'])}",
                }
            ],
        }
    )
    return {"text": text, "blocks": blocks}
