"""Feed lists: the operator's plain-text list (one URL or path per line) or an OPML file.

Returns each listed feed exactly as written (that string is the feed's identity in the digest)
and where to read it: an http(s) URL, or a local path resolved against the list's folder. Any
other scheme is kept as a URL so the fetcher refuses it by name. Reading the list never fetches.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class FeedSource:
    """One line of the feed list."""

    listed: str  # exactly as written in the list
    location: str  # URL, or absolute local path
    is_path: bool


def _source(entry: str, base: Path) -> FeedSource:
    # A Windows drive letter ("C:\feeds") is a path; anything else with a scheme is a URL.
    if _SCHEME.match(entry) and not re.match(r"^[a-zA-Z]:[\\/]", entry):
        return FeedSource(entry, entry, False)
    path = Path(entry).expanduser()
    return FeedSource(entry, str(path if path.is_absolute() else (base / path).resolve()), True)


def read_feed_list(path: str | Path) -> list[FeedSource]:
    """Parse a plain-text or OPML feed list; `#` starts a comment in plain text."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the feed list {path}: {exc.strerror}") from exc
    base = path.resolve().parent
    if text.lstrip().startswith("<"):
        return _read_opml(text, base, path)
    sources = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if entry:
            sources.append(_source(entry, base))
    return sources


def _read_opml(text: str, base: Path, path: Path) -> list[FeedSource]:
    if "<!ENTITY" in text.upper():
        raise ConfigError(f"{path}: OPML that declares XML entities is refused")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ConfigError(f"{path}: not a valid OPML file ({exc})") from exc
    sources = []
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or "").strip()
        if url:
            sources.append(_source(url, base))
    return sources
