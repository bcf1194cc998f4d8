"""Main text of an article page, and whether feed text is only a teaser (placeholder).

A minimal stand-in so the page fetcher and its tests run on this branch: the lead replaces it
with the extraction helper's version at merge. It must not fetch anything: it gets bytes.
"""

from __future__ import annotations

import trafilatura


def extract_article(html: str | bytes, url: str | None = None) -> str | None:
    """The page's main text (trafilatura, precision first), or None when none was found."""
    if not html:
        return None
    text = trafilatura.extract(html, url=url, include_comments=False, favor_precision=True)
    return text.strip() or None if text else None


def looks_like_teaser(text: str, min_words: int) -> bool:
    """True when `text` has fewer than `min_words` words: too short to stand for the article."""
    return len((text or "").split()) < min_words
