"""Turn the bytes of one RSS or Atom document into clean, plain-text entries.

This module owns parsing and normalising a feed document that has already been fetched: refusing
hostile documents (entity declarations, external DTDs), resolving links, canonical URLs, UTC
dates, HTML-to-text reduction and content hashes. It must not fetch anything (it never hands
feedparser a URL or a path, only bytes), touch the database, queue work or guess: an entry with
no valid date gets `published=None`, and an entry whose link is not http(s) is dropped with a
reason. Every string it returns is plain text, reduced from HTML with nh3, never feedparser's
own sanitiser.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote_plus, urljoin, urlsplit, urlunsplit

import feedparser
import nh3
from feedparser.encodings import convert_to_utf8

from core.errors import FeedRefused, PermanentError

__all__ = [
    "Entry",
    "ParsedFeed",
    "canonicalize_url",
    "content_hash",
    "html_to_text",
    "parse_feed",
]

_WEB_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# fmt: off
_TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "mc_cid", "mc_eid", "ref", "ref_src", "igshid", "yclid", "_hsenc",
    "_hsmi", "spm",
})
# fmt: on
_EARLIEST_YEAR = 1990
_FUTURE_SLACK = timedelta(days=2)

# Block elements become paragraph breaks; everything else is unwrapped to its text. The
# content of these elements is removed along with the tags (script text must not leak).
# fmt: off
_BLOCK_TAGS = frozenset({
    "p", "div", "br", "hr", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4",
    "h5", "h6", "blockquote", "pre", "table", "tr", "section", "article",
    "header", "footer", "figure", "figcaption",
})
_DROP_CONTENT_TAGS = frozenset({
    "script", "style", "template", "noscript", "iframe", "object", "embed", "applet",
    "svg", "math", "textarea", "select", "head", "title",
})
# fmt: on
_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
_BLOCK_TAG = re.compile(r"</?[a-z0-9]+\s*/?>", re.IGNORECASE)
_LOOKS_LIKE_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_INLINE_SPACE = re.compile(r"[^\S\n]+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_MAX_PASSES = 3  # markup escaped twice (seen in titles) needs a second pass; cap the loop

# Entity declarations are refused wherever they appear, so a padded prolog or a comment that
# hides the root element cannot smuggle one past the check (a literal "<!ENTITY" in a CDATA
# body is refused too: rare, and refusing is the safe mistake). The one external DTD that real
# feeds still carry (RSS 0.91) is allowed: feedparser strips DOCTYPEs and never loads DTDs.
_ENTITY_DECL = re.compile(rb"<!\s*entity", re.IGNORECASE)
_DOCTYPE_DECL = re.compile(rb"<!doctype[^>\[]*", re.IGNORECASE)
_EXTERNAL_ID = re.compile(rb"\b(?:system|public)\b", re.IGNORECASE)
_ALLOWED_PUBLIC_DTDS = (b"-//netscape communications//dtd rss 0.91//en",)
# The caller fetched the bytes; tell feedparser they are XML so it does not flag every document
# as "no Content-type specified" and decodes them by the XML rules.
_HEADERS = {"content-type": "application/xml"}


@dataclass(frozen=True)
class Entry:
    """One feed entry, reduced to plain text with a resolved, checked link."""

    guid: str  # entry id, else link (an entry without a link is dropped, so no hash fallback)
    url: str  # absolute link as resolved (http/https only)
    canonical_url: str
    title: str  # plain text
    text: str  # plain text body, sanitized, paragraphs separated by "\n\n"
    published: datetime | None  # tz-aware UTC; None when neither published nor updated is valid
    date_source: Literal["published", "updated", "none"]
    content_hash: str  # sha256 hex of normalised text (whitespace folded)
    author: str | None
    language: str | None


@dataclass(frozen=True)
class ParsedFeed:
    """A parsed document: its entries, the entries refused and why, and any parse error."""

    title: str
    link: str | None
    entries: list[Entry]
    dropped: list[dict[str, str]]  # {"title", "guid" (id, else link, else "entry #n"), "reason"}
    bozo_error: str | None  # malformed feed: entries that parsed are kept, the error recorded


def parse_feed(content: bytes, feed_url: str, *, now: datetime | None = None) -> ParsedFeed:
    """Parse a fetched feed document into plain-text entries.

    `feed_url` is where the bytes came from; relative links resolve against it (and against
    `xml:base`). For a local file (a path or a non-http URL) they resolve against the feed's own
    home-page link instead. `now` (default: the current time) bounds plausible dates.

    Raises FeedRefused for a document that declares XML entities or loads an external DTD, and
    PermanentError("not a feed: ...") for a document with no feed structure and no entries.
    A malformed feed keeps the entries that parsed and records the error in `bozo_error`.
    """
    _refuse_hostile(content)
    base = feed_url if _is_web_url(feed_url) else None
    headers = dict(_HEADERS)
    if base:
        headers["content-location"] = base
    # Our own nh3 pass does all sanitising and the text keeps no URLs: skipping feedparser's
    # sanitiser and in-content URI rewriting makes parsing about 3x faster.
    parsed = feedparser.parse(
        content, response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )
    if not parsed.get("version") and not parsed.entries:
        reason = _short_error(parsed.get("bozo_exception")) or "no RSS or Atom elements found"
        raise PermanentError(
            f"not a feed: {feed_url} ({reason}); check that the URL is the feed itself, "
            "not the site's HTML page"
        )
    feed = parsed.feed
    feed_link = _web_link(feed.get("link"), base)
    base = base or feed_link
    feed_language = _language(feed.get("language"))
    now = now or datetime.now(UTC)

    entries: list[Entry] = []
    dropped: list[dict[str, str]] = []
    for number, raw in enumerate(parsed.entries, start=1):
        entry, reason = _build_entry(raw, base, feed_language, now)
        if entry is None:
            dropped.append(
                {
                    "title": html_to_text(raw.get("title", "")),
                    "guid": (raw.get("id") or raw.get("link") or f"entry #{number}").strip(),
                    "reason": reason,
                }
            )
        else:
            entries.append(entry)
    return ParsedFeed(
        title=html_to_text(feed.get("title", "")),
        link=feed_link,
        entries=entries,
        dropped=dropped,
        bozo_error=_short_error(parsed.get("bozo_exception")) if parsed.get("bozo") else None,
    )


def canonicalize_url(url: str) -> str:
    """Return the canonical form of `url` used to recognise the same page under two links.

    Lower-cases scheme and host, drops default ports, the fragment, a trailing "?" and tracking
    parameters (utm_*, fbclid, gclid, ...), sorts the remaining query parameters and keeps the
    path (and its case) and the parameters' own encoding unchanged. An empty path becomes "/".
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host
    if parts.username is not None:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    path = parts.path or ("/" if netloc else "")
    kept = [p for p in parts.query.split("&") if p and not _is_tracking(p.split("=", 1)[0])]
    query = "&".join(sorted(kept, key=lambda p: (p.split("=", 1)[0], p)))
    return urlunsplit((scheme, netloc, path, query, ""))


def html_to_text(markup: str) -> str:
    """Reduce HTML (or text that may contain HTML) to plain text.

    Scripts, styles and similar elements are removed with their content; every other tag is
    removed and its text kept; entities are unescaped. Block elements, `<br>` pairs and blank
    lines become paragraph breaks ("\\n\\n"); all other whitespace folds to one space. Markup
    that was escaped twice (`&lt;b&gt;Bold&lt;/b&gt;`) is reduced too, so the result never
    contains anything that looks like a tag: a literal "<div>" in prose is removed as well.
    """
    text = markup
    for _ in range(_MAX_PASSES):
        text = _one_pass(text)
        if not _LOOKS_LIKE_TAG.search(text):
            break
    else:
        text = _LOOKS_LIKE_TAG.sub("", text)
    return text


def content_hash(text: str) -> str:
    """sha256 hex of `text` with every whitespace run folded to one space, ends stripped."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def _one_pass(markup: str) -> str:
    cleaned = nh3.clean(
        markup,
        tags=set(_BLOCK_TAGS),
        clean_content_tags=set(_DROP_CONTENT_TAGS),
        attributes={},
        strip_comments=True,
        link_rel=None,
    )
    cleaned = _BREAK_TAG.sub("\n", cleaned)
    cleaned = _BLOCK_TAG.sub("\n\n", cleaned)  # only allowed (block) tags survive nh3
    text = html.unescape(cleaned)
    text = _INLINE_SPACE.sub(" ", text)
    paragraphs = (" ".join(p.split()) for p in _PARAGRAPH_BREAK.split(text))
    return "\n\n".join(p for p in paragraphs if p)


def _refuse_hostile(content: bytes) -> None:
    # Check the document as feedparser will decode it (its own detection: BOM, XML declaration,
    # EBCDIC, UTF-7...), and the raw bytes with NULs removed in case that decoding fails and
    # feedparser falls back to reading the bytes as they are.
    decoded = convert_to_utf8(dict(_HEADERS), content, {})
    for data in (decoded, content.replace(b"\x00", b"")):
        if _ENTITY_DECL.search(data):
            raise FeedRefused("document declares XML entities (entity expansion attack)")
        for match in _DOCTYPE_DECL.finditer(data):
            decl = match.group(0).lower()
            if _EXTERNAL_ID.search(decl) and not any(d in decl for d in _ALLOWED_PUBLIC_DTDS):
                raise FeedRefused("document references an external DTD (external entity attack)")


def _build_entry(
    raw: Any, base: str | None, feed_language: str | None, now: datetime
) -> tuple[Entry | None, str]:
    link = (raw.get("link") or "").strip()
    if not link:
        link = next((lk.get("href", "") for lk in raw.get("links", []) if lk.get("href")), "")
    if not link:
        return None, "no link"
    url = urljoin(base, link) if base else link
    if not _is_web_url(url):
        scheme = urlsplit(url).scheme.lower() or "relative"
        return None, f"link scheme {scheme!r} is not http(s)"

    body, body_language = _longest_body(raw)
    text = html_to_text(body)
    title = html_to_text(raw.get("title", ""))
    published, source = _entry_date(raw, now)
    author = html_to_text(raw.get("author", "")) or None
    title_language = (raw.get("title_detail") or {}).get("language")
    guid = (raw.get("id") or "").strip() or url
    return Entry(
        guid=guid,
        url=url,
        canonical_url=canonicalize_url(url),
        title=title,
        text=text,
        published=published,
        date_source=source,
        content_hash=content_hash(text),
        author=author,
        language=_language(body_language) or _language(title_language) or feed_language,
    ), ""


def _longest_body(raw: Any) -> tuple[str, str | None]:
    candidates = list(raw.get("content", []))
    if raw.get("summary_detail"):
        candidates.append(raw["summary_detail"])
    elif raw.get("summary"):
        candidates.append({"value": raw["summary"]})
    if not candidates:
        return "", None
    best = max(candidates, key=lambda c: len(c.get("value") or ""))
    return best.get("value") or "", best.get("language")


def _entry_date(
    raw: Any, now: datetime
) -> tuple[datetime | None, Literal["published", "updated", "none"]]:
    latest = now + _FUTURE_SLACK
    for key, source in (("published_parsed", "published"), ("updated_parsed", "updated")):
        parsed = dict.get(raw, key)  # plain dict lookup: skip feedparser's deprecated aliasing
        if not parsed:
            continue
        try:
            when = datetime(*parsed[:6], tzinfo=UTC)
        except (TypeError, ValueError):
            continue
        if when.year >= _EARLIEST_YEAR and when <= latest:
            return when, source  # type: ignore[return-value]
    return None, "none"


def _web_link(link: str | None, base: str | None) -> str | None:
    if not link:
        return None
    url = urljoin(base, link.strip()) if base else link.strip()
    return url if _is_web_url(url) else None


def _is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in _WEB_SCHEMES and bool(parts.netloc)


def _is_tracking(key: str) -> bool:
    name = unquote_plus(key).lower()
    return name.startswith("utm_") or name in _TRACKING_PARAMS


def _language(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value or None


def _short_error(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}"[:200]
