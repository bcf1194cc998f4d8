"""Escaping of untrusted digest text and links, one pair of functions per output format.

Every title, summary, label, outlet name and URL in a digest comes from a feed or a model, so
each renderer passes it through the functions for its format: Markdown, Slack mrkdwn, HTML and
Atom (XML). A link target is first made safe once (`safe_link`: http(s) only, characters that no
format tolerates percent-encoded); a link that cannot be made safe is shown as plain text and its
reason is collected in the caller's `skipped` list. Pure functions: no I/O, no logging.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote, urlsplit

MAX_URL = 2000
# Characters RFC 3986 allows in a URI (unreserved, reserved and '%'); the rest is encoded.
_URI_SAFE = "-._~:/?#[]@!$&'()*+,;=%"
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# Markdown: every character that can open markup, a link, an entity, raw HTML or math.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|!#&~$@])")
_MD_LINE_START = re.compile(r"^([+\-=])|^(\d+)([.)])")
_MD_AUTOLINK = re.compile(r"(:)(//)|(?i:(www))(\.)")
_SLACK_FORMAT = str.maketrans({"*": "＊", "_": "＿", "~": "～", "`": "｀", "|": "¦"})
_SLACK_MENTION = re.compile(r"@(?=(channel|here|everyone)\b)", re.IGNORECASE)

Skipped = list[tuple[str, str]]  # (the link's text, why it was not linked)


def safe_link(url: str | None) -> tuple[str | None, str | None]:
    """An absolute http(s) URL with every character outside RFC 3986 percent-encoded (so it has
    no space, quote, `<`, `>`, `|`, backslash or newline), or None and the reason."""
    url = (url or "").strip()
    if not url:
        return None, "no link"
    if _CONTROL.search(url):
        return None, "control character in the link"
    if len(url) > MAX_URL:
        return None, f"link longer than {MAX_URL} characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return None, "not a valid URL"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return None, f"{scheme}: link is not http(s)" if scheme else "relative link"
    if not parts.netloc:
        return None, "link has no host"
    return quote(_LONE_PERCENT.sub("%25", url), safe=_URI_SAFE), None


def _plain(text: object) -> str:
    return " ".join(str(text if text is not None else "").split())


def _resolve(url: str | None, text: str, skipped: Skipped | None) -> str | None:
    href, reason = safe_link(url)
    if href is None and url and skipped is not None:
        skipped.append((text, reason or ""))
    return href


# --- Markdown --------------------------------------------------------------------------


def md_text(text: object) -> str:
    """Markdown that shows `text` as written on one line: markup, link brackets, raw HTML,
    entities, math, autolinks and block markers at the line start are all backslash-escaped."""
    out = _MD_SPECIAL.sub(r"\\\1", _plain(text))
    out = _MD_AUTOLINK.sub(lambda m: f"\\{m[1]}{m[2]}" if m[1] else f"{m[3]}\\{m[4]}", out)
    return _MD_LINE_START.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", out)


def md_link(url: str | None, text: object, skipped: Skipped | None = None) -> str:
    """`[text](<url>)`, or the escaped text alone when the URL cannot be made safe."""
    shown = md_text(text)
    href = _resolve(url, _plain(text), skipped)
    return f"[{shown}](<{href}>)" if href else shown


# --- Slack mrkdwn ----------------------------------------------------------------------


def slack_text(text: object) -> str:
    """Slack mrkdwn that shows `text` as written: `&<>` escaped (so no `<!channel>`, `<@U1>` or
    `<url|text>`), formatting characters swapped for look-alikes, @channel/@here defused."""
    out = _plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SLACK_MENTION.sub("@\u200b", out.translate(_SLACK_FORMAT))


def slack_link(url: str | None, text: object, skipped: Skipped | None = None) -> str:
    """`<url|text>`, or the escaped text alone when the URL cannot be made safe."""
    shown = slack_text(text)
    href = _resolve(url, _plain(text), skipped)
    return f"<{href.replace('&', '&amp;')}|{shown}>" if href else shown


# --- HTML ------------------------------------------------------------------------------


def html_text(text: object) -> str:
    """HTML text or attribute value: `&<>"'` as entities."""
    return html.escape(str(text if text is not None else ""), quote=True)


def html_link(url: str | None, text: object, skipped: Skipped | None = None) -> str:
    """An `<a>` to a safe http(s) URL, or the escaped text alone."""
    href = _resolve(url, _plain(text), skipped)
    if href is None:
        return html_text(text)
    return f'<a href="{html_text(href)}" rel="noopener noreferrer">{html_text(text)}</a>'


# --- Atom (XML) ------------------------------------------------------------------------


def atom_text(text: object) -> str:
    """Text for an XML text node or attribute (ElementTree escapes `&<>"`): characters XML
    forbids are removed."""
    return _XML_INVALID.sub("", str(text if text is not None else ""))


def atom_href(url: str | None, skipped: Skipped | None = None, text: str = "") -> str | None:
    """A safe http(s) URL for an Atom `href`, or None."""
    return _resolve(url, text or str(url), skipped)
