"""Find the article's own text in the HTML of its page, and tell a feed's teaser from a full text.

This module owns two pure functions: `extract_article` (page HTML -> the main article text as
plain text, paragraphs separated by "\\n\\n", the shape `tasks.feedparse.html_to_text` gives, or
None when the page has no main text) and `looks_like_teaser` (is a feed's text too short or
visibly cut). It must not fetch anything, touch the database or queue work: it is handed the
page's HTML (str, or bytes with an optional declared charset) and never a URL to open;
trafilatura gets the decoded string, so it cannot download anything either.

Why trafilatura, and these settings (measured by `bench/fulltext.py` on the 12 tuning pages;
bench/README.md has the table): word F1 0.986 and 0.2% boilerplate words with these settings,
against 0.958 / 3.7% for trafilatura's defaults, 0.954 / 4.9% for readability-lxml and 0.820 /
22.9% for all visible text, at about 450 pages per CPU second (readability ~620), which is
nothing next to the LLM call the text feeds. Comments are never wanted; tables are kept
(figures in a table are the article's); images, links and formatting are dropped because the
output is plain text. Sign-up boxes whose class names trafilatura does not know ("boletin") are
pruned by class before extraction. `favor_precision` changed nothing on the tuning pages and is
kept for pages harder than ours; `fast` (no fallback extractors) was as good there and 1.7x
faster, but trafilatura's own evaluation loses F1 with it, and speed does not matter here.
`deduplicate` stays off: it keeps a process-wide cache, so one page would change what the next
page gives. newspaper4k was not measured: it pulls in nltk and a public-suffix list it may
download, and its published F1 (0.949) is below trafilatura's (0.958, FIELD-NOTES).
"""

from __future__ import annotations

import codecs
import re

import trafilatura

from tasks.feedparse import html_to_text

__all__ = ["extract_article", "looks_like_teaser", "MIN_ARTICLE_WORDS"]

# Fewer words than this and the page has no main text we would hand the summarizer (a login
# wall, a list of links, an error page); trafilatura happily returns a short heading there.
MIN_ARTICLE_WORDS = 25
# Sign-up boxes trafilatura keeps when their class names are not English ("boletin"): pruned
# by class or id before extraction. Only words that never name an article body are listed
# ("abonne" or "suscriptor" can mark the subscriber-only body itself).
_BOX_WORDS = ("newsletter", "boletin", "signup", "sign-up")
_LOWER = "translate(@class,'ABCDEFGHIJKLMNOPQRSTUVWXYZ','abcdefghijklmnopqrstuvwxyz')"
PRUNE_XPATH = (
    "//*["
    + " or ".join(f"contains({_LOWER},'{w}') or contains(@id,'{w}')" for w in _BOX_WORDS)
    + "]"
)
# The settings chosen on bench/pages/tune (bench/fulltext.py compares the alternatives).
TRAFILATURA_OPTIONS: dict[str, object] = {
    "prune_xpath": PRUNE_XPATH,
    "output_format": "html",
    "favor_precision": True,
    "include_comments": False,
    "include_tables": True,
    "include_images": False,
    "include_links": False,
    "include_formatting": False,
    "deduplicate": False,
    "with_metadata": False,
}

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_SNIFF_BYTES = 4096
_CELL_END = re.compile(r"</t[dh]>", re.IGNORECASE)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def extract_article(
    html: str | bytes, url: str | None = None, charset: str | None = None
) -> str | None:
    """The main article text of one page as plain text, or None when it has none.

    `html` is the page as fetched; bytes are decoded with their byte-order mark, else the
    `charset` the server declared, else a `<meta charset>` in the page, else UTF-8 (and
    windows-1252 when that fails). `url` only feeds trafilatura's URL-based heuristics; it is
    never opened. Navigation, cookie banners, comments, newsletter
    boxes, related links and footers are left out; the text has no markup.
    """
    text = decode_html(html, charset) if isinstance(html, bytes) else html
    if not text or not text.strip():
        return None
    try:
        extracted = trafilatura.extract(text, url=url, **TRAFILATURA_OPTIONS)
    except (ValueError, TypeError):  # malformed markup lxml cannot build a tree from
        return None
    if not extracted:
        return None
    plain = html_to_text(_CELL_END.sub(" ", extracted))  # "a</td><td>b" must not read "ab"
    if len(plain.split()) < MIN_ARTICLE_WORDS:
        return None
    return plain


def decode_html(data: bytes, charset: str | None = None) -> str:
    """Decode page bytes: BOM, then the declared `charset`, then `<meta charset>`, then UTF-8,
    then windows-1252 (which decodes anything, so a page is never lost to a bad byte)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    candidates = [charset] if charset else []
    match = _META_CHARSET.search(data[:_SNIFF_BYTES])
    if match:
        candidates.append(match.group(1).decode("ascii", "ignore"))
    for name in candidates:
        try:
            encoding = codecs.lookup(name).name
        except LookupError:
            continue
        if encoding in ("latin-1", "iso8859-1", "ascii"):
            encoding = "cp1252"  # what browsers do with these labels (WHATWG Encoding)
        return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


# "Read more" and friends, as the last words of a text (en, es, fr, de), and ellipses.
_CUT_MARKERS = re.compile(
    r"""(?:
        read\s+more | continue\s+reading | keep\s+reading | read\s+the\s+full\s+(?:story|article)
        | leer\s+m[aá]s | seguir\s+leyendo | contin[uú]a\s+leyendo | sigue\s+leyendo
        | lire\s+la\s+suite | lire\s+plus | en\s+savoir\s+plus | continuer\s+la\s+lecture
        | weiterlesen | mehr\s+lesen | mehr\s+erfahren | zum\s+artikel
        | den\s+ganzen\s+artikel\s+lesen
    )\W*$""",
    re.IGNORECASE | re.VERBOSE,
)
_CUT_ELLIPSIS = re.compile(r"(?:\[\s*(?:…|\.\.\.)\s*\]|…|\.\.\.)\W*$")


def looks_like_teaser(text: str, min_words: int) -> bool:
    """True when `text` has fewer than `min_words` words or is visibly cut: it ends in "Read
    more", "Continue reading" (or "Leer más", "Lire la suite", "Weiterlesen" ...), "[…]",
    "[...]", or a trailing "…" / "...". Such a text is worth replacing with the page's own."""
    stripped = text.strip()
    if len(stripped.split()) < min_words:
        return True
    return bool(_CUT_MARKERS.search(stripped) or _CUT_ELLIPSIS.search(stripped))
