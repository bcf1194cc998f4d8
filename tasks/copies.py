"""Same text or same story: the copy relation between two articles, decided on their words.

Two articles are *copies* when one is the other's text republished with light edits: a wire story
under another outlet's URL with a new headline, a changed dateline or first words, a sentence
added or dropped, a credit line ("Reporting by ...; editing by ..."). That is decided here, on the
text itself, never on topic similarity: separately written coverage of one event shares names and
figures but not runs of words, so it is a *story* relation (`tasks.stories`), not a copy.

- `fingerprint` makes the persistent signature of a text: MinHash (datasketch) over word
  5-shingles and its LSH band keys, which PostgreSQL indexes so candidates are found among every
  article stored, from any run.
- `compare` verifies a candidate on the two texts: shingle containment and Jaccard, plus two
  rules for recurring series: a copy keeps the original's numbers, dates and weekdays, and its
  edits add, drop or reword (at the start) but never swap value after value through the text,
  whereas the next edition of a series (same template, new values) does exactly that, so it is
  never a copy.

Plain functions over text, no I/O; `tasks.copycheck` is the task that reads, decides and stores.
"""

from __future__ import annotations

import difflib
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
MAX_SUBSTITUTIONS = 2
"""Separate short swaps (at most `SWAP_WORDS` words each way) a copy may have besides one edit
in its opening: a light edit adds, drops or rewords at the start; it does not swap three
separate values. The next edition of a series swaps its values slot by slot (prices, names,
counts, weekdays)."""
SWAP_WORDS = 8
OPENING_WORDS = 15  # the dateline and first words: where copies are edited

_TOKEN = re.compile(r"\w+(?:[.,:'’]\w+)*", re.UNICODE)
_DIGIT = re.compile(r"\d")
# fmt: off
_CALENDAR = frozenset("""
monday tuesday wednesday thursday friday saturday sunday tue tues thu thur thurs fri january
february april june july august september october november december jan feb apr jun jul aug sep
sept oct nov dec lunes martes miércoles jueves viernes sábado domingo enero febrero marzo abril
mayo junio julio agosto septiembre octubre noviembre diciembre lundi mardi mercredi jeudi
vendredi samedi dimanche janvier février avril juin juillet août septembre octobre novembre
décembre montag dienstag mittwoch donnerstag freitag samstag sonntag januar februar märz juni
juli oktober dezember
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


def substitutions(ta: list[str], tb: list[str]) -> list[tuple[str, str]]:
    """Short swaps between two token sequences (at most `SWAP_WORDS` words each way), leaving
    out one edit in the opening (a dateline or reworded first words): the slots of a template
    that an edition of a series fills with new values."""
    ops = difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes()
    swaps = [
        (i1, j1, " ".join(ta[i1:i2]), " ".join(tb[j1:j2]))
        for op, i1, i2, j1, j2 in ops
        if op == "replace" and max(i2 - i1, j2 - j1) <= SWAP_WORDS
    ]
    if swaps and min(swaps[0][0], swaps[0][1]) < OPENING_WORDS:
        swaps = swaps[1:]
    return [(x, y) for _, _, x, y in swaps]


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
    swaps = substitutions(ta, tb)
    if len(swaps) > MAX_SUBSTITUTIONS:
        shown = "; ".join(f"{x} -> {y}" for x, y in swaps[:3])
        reason = f"same template, {len(swaps)} values swapped ({shown}): a new edition"
        return Comparison(containment, jaccard, agreement, False, reason)
    reason = f"copy (containment {containment:.2f}, Jaccard {jaccard:.2f})"
    return Comparison(containment, jaccard, agreement, True, reason)
