"""Rendering of a built digest: Markdown, Atom and a Slack message (HTML: `tasks.render_html`).

Each function takes the `digest.json` document (of any age: see `tasks.digest_view`) and returns
text (or, for Slack, the JSON body); none reads the database, writes a file or talks to the
network. Every piece of digest text is untrusted and goes through the escaping of its format in
`tasks.escape`; a link that cannot be made safe is shown as plain text, its reason listed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from . import digest_view as view
from .digest_view import story_articles, trending
from .escape import (
    Skipped,
    atom_href,
    atom_text,
    md_link,
    md_text,
    safe_link,
    slack_link,
    slack_text,
)
from .render_html import render_html

__all__ = [
    "render_atom",
    "render_html",
    "render_markdown",
    "safe_link",
    "slack_payload",
    "story_articles",
    "trending",
]

ATOM_NS = "http://www.w3.org/2005/Atom"
FEED_ID = "urn:agentic-media-lab:digest"
AUTHOR = "Agentic Media Lab"
SLACK_MAX_STORIES = 20  # Slack allows 50 blocks a message
SLACK_MAX_TEXT = 2900  # a section's text may hold 3000 characters


# --- Markdown --------------------------------------------------------------------------


def _md_article(a: dict[str, Any], story_text: str | None, skipped: Skipped) -> str:
    item = "- " + md_link(a["url"], a.get("title") or a["url"], skipped)
    if a.get("source"):
        item += f" — {md_text(a['source'])}"
    if a.get("summary") and a["summary"] != story_text:
        item += f": {md_text(a['summary'])}"
    if a.get("also_in"):
        also = [
            md_link(c.get("url"), c.get("source") or c.get("url") or "?", skipped)
            for c in a["also_in"]
        ]
        item += f" (also in {', '.join(also)})"
    return item


def _md_story(digest: dict[str, Any], s: dict[str, Any], skipped: Skipped) -> list[str]:
    arts = story_articles(digest, s)
    text = view.story_summary(digest, s)
    lines = [f"### {md_text(s['label'])}", ""]
    if s.get("keywords"):
        lines += ["_" + md_text(", ".join(s["keywords"])) + "_", ""]
    if text:
        lines += [md_text(text), ""]
    why = view.timeline_text(digest, s)
    lines.append(md_text(" · ".join(view.facts(s, arts))) + (f"  \n{md_text(why)}" if why else ""))
    lines.append("")
    lines += [_md_article(a, text, skipped) for a in arts]
    return [*lines, ""]


def _md_other(digest: dict[str, Any], s: dict[str, Any], skipped: Skipped) -> str:
    arts = story_articles(digest, s)
    label = f"**{md_text(s['label'])}**"
    if len(arts) == 1:
        label = f"**{md_link(arts[0]['url'], s['label'], skipped)}**"
    text = view.one_line_summary(digest, s)
    n = view.independent_texts(s)
    also = [c for a in arts for c in a.get("also_in") or []]
    carried = ", ".join(md_link(c.get("url"), c.get("source") or "?", skipped) for c in also)
    return (
        f"- {label}"
        + (f" — {md_text(text)}" if text else "")
        + (f" ({n} sources)" if n > 1 else "")
        + (f" (also in {carried})" if also else "")
    )


def render_markdown(digest: dict[str, Any]) -> str:
    """`digest.md`: trending stories in full, the other stories one line each, feed health,
    failed articles and any link left out."""
    skipped: Skipped = []
    lines = [
        f"# News digest — {md_text(digest['as_of'])}",
        "",
        f"Window: {md_text(digest['window_hours'])} h ending {md_text(digest['as_of'])} · "
        f"run {md_text(digest['run_id'])}",
        "Modes: " + md_text("; ".join(f"{k}: {v}" for k, v in digest["modes"].items())),
        "",
        "## Trending",
        "",
    ]
    hot, rest = trending(digest), view.others(digest)
    for s in hot:
        lines += _md_story(digest, s, skipped)
    if not hot:
        lines += ["_Nothing is trending in this window._", ""]
    lines += ["## Other stories", ""]
    lines += [_md_other(digest, s, skipped) for s in rest] or ["_No other stories._"]
    lines += [
        "",
        "## Feeds",
        "",
        "| feed | status | articles | error | dropped |",
        "|---|---|---|---|---|",
    ]
    for f in digest["feeds"]:
        cells = (f["url"], f["status"], f["articles"], f.get("error") or "", view.dropped_note(f))
        lines.append("| " + " | ".join(md_text(c) for c in cells) + " |")
    failed = view.failed_articles(digest)
    if failed:
        lines += ["", "## Failed articles", ""]
        lines += [f"- {md_link(a['url'], a['title'], skipped)}: {md_text(a['error'])}"
                  for a in failed]  # fmt: skip
    if skipped:
        lines += ["", "## Links left out", ""]
        lines += [f"- {md_text(t)}: {md_text(r)}" for t, r in dict(skipped).items()]
    return "\n".join(lines) + "\n"


# --- Atom ------------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: object = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", {k: atom_text(v) for k, v in attrs.items()})
    if text is not None:
        el.text = atom_text(text)
    return el


def render_atom(digest: dict[str, Any]) -> str:
    """`digest.xml`: an Atom 1.0 feed with one entry per trending story, its summary the story's.

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
        hrefs = [(atom_href(a["url"]), a) for a in arts]
        lead = next((h for h, _ in hrefs if h), None)
        # Atom wants an alternate link on an entry without content: the story in digest.html.
        _sub(entry, "link", rel="alternate", type="text/html",
             href=lead or f"digest.html#{s['id']}")  # fmt: skip
        for href, a in hrefs:
            if href and href != lead:
                _sub(entry, "link", rel="related", type="text/html", href=href,
                     title=a.get("title") or href)  # fmt: skip
        for k in s.get("keywords") or []:
            _sub(entry, "category", term=k)
        headlines = "; ".join(str(a.get("title") or a["url"]) for a in arts)
        summary = view.story_summary(digest, s)
        summary = summary or f"{view.independent_texts(s)} sources: {headlines}"
        _sub(entry, "summary", summary, type="text")
    ET.indent(feed)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="unicode") + "\n"


# --- Slack -----------------------------------------------------------------------------


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack does not auto-link URLs or parse names and mentions in our text
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def slack_payload(digest: dict[str, Any]) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body: fallback `text` plus Block Kit `blocks`.

    Holds nothing that changes between two publications of the same content (no generation
    time), so an unchanged digest gives an identical body.
    """
    hot = trending(digest)
    day = view.day(digest)
    c = digest["counts"]
    text = f"News digest {day}: {len(hot)} trending of {c['stories']} stories"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"News digest — {day}"[:150]}}
    ]
    for s in hot[:SLACK_MAX_STORIES]:
        arts = story_articles(digest, s)
        lead = next((a["url"] for a in arts if safe_link(a["url"])[0]), None)
        lines = [f"*{slack_link(lead, str(s['label'])[:300])}*"]
        summary = view.story_summary(digest, s)
        facts = f"{view.independent_texts(s)} sources"
        if s.get("keywords"):
            facts += " · " + slack_text(", ".join(s["keywords"]))
        for extra in (slack_text(summary) if summary else "", f"_{facts}_"):
            if extra and len("\n".join([*lines, extra])) <= SLACK_MAX_TEXT:
                lines.append(extra)
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(lines)[:SLACK_MAX_TEXT])})
    if not hot:
        blocks.append({"type": "section", "text": _mrkdwn("Nothing is trending in this window.")})
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(
                    f"{c['in_window']} articles · {c['stories']} stories · "
                    f"{slack_text(digest['window_hours'])} h ending {slack_text(digest['as_of'])}"
                )
            ],
        }
    )
    return {"text": text, "blocks": blocks}
