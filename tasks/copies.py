"""Same text or same story: the copy relation between two articles, decided on their words.

Two articles are *copies* when one is the other's text republished with light edits: a wire story
under another outlet's URL with a new headline, a changed dateline or first words, a sentence
added or dropped, a credit line ("Reporting by ...; editing by ..."). That is decided here, on the
text itself, never on topic similarity: separately written coverage of one event shares names and
figures but not runs of words, so it is a *story* relation (`tasks.stories`), not a copy.

- `fingerprint` makes the persistent signature of a text: MinHash (datasketch) over word
  5-shingles and its LSH band keys, which PostgreSQL indexes so candidates are found among every
  article stored, from any run.
- `compare` verifies a candidate on the two texts: shingle containment and Jaccard, plus the
  *figures* rule: a copy keeps the original's numbers, dates and weekdays, whereas the next edition
  of a recurring series (same template, new figures) changes them, so it is never a copy.

Plain functions over text, no I/O; `tasks.copycheck` is the task that reads, decides and stores.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash

SHINGLE_WORDS = 5
NUM_PERM = 128
BANDS, ROWS = 32, 4  # LSH: candidates above an estimated Jaccard of about (1/32)^(1/4) = 0.42
SEED = 20261128

# Decision thresholds: tuned on examples/eval (the tuning set) only; see bench/quality.py.
MIN_CONTAINMENT = 0.55
"""Share of the shorter text's shingles found in the longer one for a copy."""
MIN_JACCARD = 0.30
"""Shingle Jaccard for a copy (keeps a short excerpt of a long text from counting)."""
MIN_FIGURE_AGREEMENT = 0.6
"""Share of the figures (numbers, dates, weekdays) of the text with fewer figures that the other
text also has; below it, two look-alike texts are editions of a series, not copies."""
MIN_FIGURES = 2
"""Texts with fewer figures than this are not judged on figures."""

_TOKEN = re.compile(r"\w+(?:[.,:'’]\w+)*", re.UNICODE)
_DIGIT = re.compile(r"\d")
# fmt: off
_CALENDAR = frozenset("""
monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat
sun january february march april may june july august september october november december jan feb
mar apr jun jul aug sep sept oct nov dec lunes martes miércoles jueves viernes sábado domingo
enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre lundi
mardi mercredi jeudi vendredi samedi dimanche janvier février mars avril mai juin juillet août
septembre octobre novembre décembre montag dienstag mittwoch donnerstag freitag samstag sonntag
januar februar märz april mai juni juli august september oktober november dezember yesterday
today tomorrow tonight morning afternoon evening
""".split())
# fmt: on


def words(text: str) -> list[str]:
    """Lower-case word tokens; a number keeps its separators ("5,437.48" is one token)."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def shingles(tokens: list[str], k: int = SHINGLE_WORDS) -> set[str]:
    """Word k-shingles; a text shorter than k words is one shingle of all its words."""
    if len(tokens) < k:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + k]) for i in range(len(tokens) - k + 1)}


def figures(tokens: list[str]) -> set[str]:
    """What changes from one edition of a series to the next: numbers, dates, weekdays."""
    return {t for t in tokens if _DIGIT.search(t) or t in _CALENDAR}


@dataclass(frozen=True)
class Fingerprint:
    """The stored signature of a text: MinHash values, LSH band keys, word count."""

    minhash: bytes
    bands: list[int]
    words: int


def fingerprint(text: str) -> Fingerprint:
    """MinHash over the text's word shingles, and its LSH band keys (signed 64-bit)."""
    tokens = words(text)
    mh = MinHash(num_perm=NUM_PERM, seed=SEED)
    mh.update_batch([s.encode("utf-8") for s in sorted(shingles(tokens))])
    values = np.asarray(mh.hashvalues, dtype=np.uint32)
    return Fingerprint(values.tobytes(), band_keys(values), len(tokens))


def band_keys(values: np.ndarray) -> list[int]:
    """One key per LSH band: a hash of (band number, that band's rows), as signed int64."""
    keys = []
    for b in range(BANDS):
        chunk = values[b * ROWS : (b + 1) * ROWS].tobytes()
        digest = hashlib.blake2b(bytes([b]) + chunk, digest_size=8).digest()
        keys.append(int.from_bytes(digest, "big", signed=True))
    return keys


@dataclass(frozen=True)
class Comparison:
    """How two texts relate on their words."""

    containment: float
    jaccard: float
    figure_agreement: float | None  # None: too few figures to judge
    is_copy: bool
    reason: str


def compare(a: str, b: str) -> Comparison:
    """Decide whether `a` and `b` are copies of one text (see the module docstring)."""
    ta, tb = words(a), words(b)
    sa, sb = shingles(ta), shingles(tb)
    if not sa or not sb:
        return Comparison(0.0, 0.0, None, False, "an empty text")
    both = len(sa & sb)
    containment = both / min(len(sa), len(sb))
    jaccard = both / len(sa | sb)
    fa, fb = figures(ta), figures(tb)
    agreement = None
    if min(len(fa), len(fb)) >= MIN_FIGURES:
        agreement = len(fa & fb) / min(len(fa), len(fb))
    if containment < MIN_CONTAINMENT or jaccard < MIN_JACCARD:
        reason = f"different texts (containment {containment:.2f}, Jaccard {jaccard:.2f})"
        return Comparison(containment, jaccard, agreement, False, reason)
    if agreement is not None and agreement < MIN_FIGURE_AGREEMENT:
        reason = f"same template, other figures ({agreement:.2f} agree): a new edition"
        return Comparison(containment, jaccard, agreement, False, reason)
    reason = f"copy (containment {containment:.2f}, Jaccard {jaccard:.2f})"
    return Comparison(containment, jaccard, agreement, True, reason)
