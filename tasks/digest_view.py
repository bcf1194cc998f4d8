"""What every renderer shows of a digest, read from `digest.json` of any age.

Newer digests carry per-story `summary`, `independent_texts`, `timeline` and kept articles with
their copies (`also_in`); older ones lack them, so every such field is read with a fallback here
and the renderers never look at the raw shape. Plain data in, plain data out: no escaping (that
is `tasks.escape`), no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

COPY_STATUSES = ("duplicate", "near_duplicate")
ONE_LINE = 200  # characters of a story's line in the "other stories" list
_SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)")


def day(digest: dict[str, Any]) -> str:
    """The digest's day (YYYY-MM-DD of `as_of`)."""
    return str(digest["as_of"])[:10]


def trending(digest: dict[str, Any]) -> list[dict[str, Any]]:
    """The digest's trending stories, highest score first."""
    return sorted(
        (s for s in digest["stories"] if s["is_trending"]), key=lambda s: -s["trend_score"]
    )


def others(digest: dict[str, Any]) -> list[dict[str, Any]]:
    """The stories that do not trend, in the digest's order."""
    return [s for s in digest["stories"] if not s["is_trending"]]


def _copies_of(digest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for a in digest["articles"]:
        if a.get("status") in COPY_STATUSES and isinstance(a.get("duplicate_of"), str):
            out.setdefault(a["duplicate_of"], []).append(
                {
                    "source": a.get("source") or a.get("feed_url"),
                    "url": a.get("canonical_url") or a.get("url"),
                    "title": a.get("title"),
                }
            )
    return out


def story_articles(digest: dict[str, Any], story: dict[str, Any]) -> list[dict[str, Any]]:
    """A story's kept texts as {url, title, source, published, summary, also_in}: a copy is
    never its own item but one of `also_in` (the other outlets that carried the same text)."""
    by_url = {a["canonical_url"]: a for a in digest["articles"]}
    items = story.get("articles") or [
        {"url": url, "title": by_url.get(url, {}).get("title") or url}
        for url in story.get("article_urls") or []
    ]
    copies = None
    out = []
    for item in items:
        run_article = by_url.get(item["url"], {})
        a = {
            "source": run_article.get("source") or run_article.get("feed_url"),
            "published": run_article.get("published") or run_article.get("first_seen"),
            "summary": run_article.get("summary"),
            **{k: v for k, v in item.items() if v is not None},
        }
        if "also_in" not in a:  # an older digest: copies are found through duplicate_of
            if run_article.get("status") in COPY_STATUSES:
                continue
            copies = _copies_of(digest) if copies is None else copies
            a["also_in"] = copies.get(a["url"], [])
        out.append(a)
    return out


def independent_texts(story: dict[str, Any]) -> int:
    """How many distinct texts a story has (copies count once); older digests: its sources."""
    n = story.get("independent_texts")
    return int(n) if n is not None else len(story.get("sources") or [])


def copies_count(articles: list[dict[str, Any]]) -> int:
    """How many copies the story's kept texts have between them."""
    return sum(len(a.get("also_in") or []) for a in articles)


def story_summary(digest: dict[str, Any], story: dict[str, Any]) -> str | None:
    """The story's text: its summary, else its synthesis, else (a one-article story) the
    article's summary."""
    text = story.get("summary") or story.get("synthesis")
    if text:
        return str(text)
    arts = story_articles(digest, story)
    return arts[0].get("summary") if len(arts) == 1 else None


def one_line_summary(digest: dict[str, Any], story: dict[str, Any]) -> str | None:
    """The story's one-line summary: its `summary` as given, else the first sentence of its
    synthesis or lone article's summary, at most ONE_LINE characters."""
    if story.get("summary"):
        return str(story["summary"])
    text = story_summary(digest, story)
    if not text:
        return None
    text = " ".join(text.split())
    first = _SENTENCE.match(text)
    text = first[1] if first else text
    return text if len(text) <= ONE_LINE else text[: ONE_LINE - 1].rstrip() + "…"


def facts(story: dict[str, Any], articles: list[dict[str, Any]]) -> list[str]:
    """Short facts about a story: sources (independent texts), copies, novelty, score."""
    out = [f"{independent_texts(story)} sources"]
    copies = copies_count(articles)
    if copies:
        out.append(f"{copies} cop{'y' if copies == 1 else 'ies'}")
    sig = story.get("signals") or {}
    if isinstance(sig.get("novelty"), int | float):
        out.append(f"novelty {sig['novelty']:.2f}")
    out.append(f"score {float(story.get('trend_score') or 0):.2f}")
    return out


def timeline(story: dict[str, Any]) -> list[dict[str, Any]]:
    """The story's slices {start, end, texts, window}, oldest first; [] when absent."""
    out = []
    for t in story.get("timeline") or []:
        try:
            out.append({**t, "texts": max(0, int(t.get("texts") or 0))})
        except (TypeError, ValueError):
            continue
    return out


def timeline_text(digest: dict[str, Any], story: dict[str, Any]) -> str | None:
    """e.g. "independent texts per day: 0 0 1 0 0 0 0 | 7 today"; None without a timeline."""
    slices = timeline(story)
    if not slices:
        return None
    hours = digest.get("window_hours") or 24
    unit, now = ("day", "today") if hours == 24 else (f"{hours} h", f"in the last {hours} h")
    before = [t for t in slices if not t.get("window")]
    current = sum(t["texts"] for t in slices if t.get("window"))
    past = " ".join(str(t["texts"]) for t in before)
    return f"independent texts per {unit}: {past + ' | ' if past else ''}{current} {now}"


def failed_articles(digest: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's articles that failed, as {title, url, error}."""
    return [
        {
            "title": a.get("title") or a.get("canonical_url") or a.get("url") or "(untitled)",
            "url": a.get("canonical_url") or a.get("url"),
            "error": a.get("error") or a.get("text_error") or "failed",
        }
        for a in digest["articles"]
        if a.get("status") == "failed"
    ]


def dropped_note(feed: dict[str, Any]) -> str:
    """e.g. "3 entries dropped: no link" for a feed's entries read without a usable link."""
    reasons = Counter(str(d.get("reason") or "no reason given") for d in feed.get("dropped") or [])
    return "; ".join(
        f"{n} entr{'y' if n == 1 else 'ies'} dropped: {reason}" for reason, n in reasons.items()
    )
