"""Story grouping: how alike two articles are, and which articles make one story.

Plain functions over texts and vectors, no I/O: *anchors* (names and figures, which survive
translation) weighted by IDF; article vectors with each minority language's mean moved onto the
majority's (an English-only model otherwise pulls same-language articles together); the mixed
similarity; average-link clustering run inside each connected component, with duplicates tied to
their original first; and what represents a story offline (its most central headline, its most
shared names). `tasks.analyze` calls these; nothing here scores trends or touches storage.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from typing import Any

import numpy as np

KEYWORDS = 5
IDF_FLOOR = 1.0  # smoothed IDF (as scikit-learn's smooth_idf): a name in every article counts


# --- Anchors: names and figures --------------------------------------------------------

_SENTENCES = re.compile(r"(?<=[.!?:;])\s+|\n+")
_TOKEN = re.compile(r"\d[\d.,]*\d|\d|[^\W\d_][\w'’-]*")
_POSSESSIVE = re.compile(r"['’]s?$")


def anchor_tokens(text: str, *, skip_capitals: bool = False) -> list[tuple[str, str]]:
    """(key, surface) of each name or figure in `text`.

    A name is a capitalised word of three letters or more that does not open its sentence
    (which works the same in every language written in Latin script). A figure is a number,
    keyed by its digits, so 2.4 and 2,4 or 3,200 and 3.200 match across languages.
    """
    out: list[tuple[str, str]] = []
    for sentence in _SENTENCES.split(text):
        for k, tok in enumerate(_TOKEN.findall(sentence)):
            if tok[0].isdigit():
                out.append(("#" + re.sub(r"\D", "", tok), tok))
            elif not skip_capitals and k > 0 and tok[0].isupper() and len(tok) >= 3:
                surface = _POSSESSIVE.sub("", tok)
                out.append((surface.lower(), surface))
    return out


def _title_case(title: str) -> bool:
    words = [w for w in re.findall(r"[^\W\d_]+", title) if len(w) > 3]
    return len(words) >= 3 and sum(w[0].isupper() for w in words) / len(words) > 0.6


def anchor_terms(title: str, body: str) -> Counter[str]:
    """Anchor counts of one article (a Title Case headline contributes only its figures)."""
    return Counter(k for k, _ in article_anchors(title, body))


def article_anchors(title: str, body: str) -> list[tuple[str, str]]:
    """(key, surface) of the names and figures of one article, title first."""
    return anchor_tokens(title, skip_capitals=_title_case(title)) + anchor_tokens(body)


def anchor_similarity(
    rows: list[Counter[str]], cols: list[Counter[str]], corpus: list[Counter[str]]
) -> np.ndarray:
    """Cosine of log-TF x IDF anchor vectors, rows x cols (IDF over `corpus`)."""
    df: Counter[str] = Counter()
    for doc in corpus:
        df.update(doc.keys())
    n = len(corpus)

    def idf(term: str) -> float:
        return math.log((1 + n) / (1 + df[term])) + IDF_FLOOR

    def weights(doc: Counter[str]) -> dict[str, float]:
        w = {t: (1 + math.log(c)) * idf(t) for t, c in doc.items()}
        norm = math.sqrt(sum(v * v for v in w.values())) or 1.0
        return {t: v / norm for t, v in w.items() if v > 0}

    wr, wc = [weights(d) for d in rows], [weights(d) for d in cols]
    postings: dict[str, tuple[list[int], list[float]]] = {}
    for j, w in enumerate(wc):
        for t, v in w.items():
            postings.setdefault(t, ([], []))
            postings[t][0].append(j)
            postings[t][1].append(v)
    out = np.zeros((len(rows), len(cols)), dtype=np.float32)
    by_term: dict[str, tuple[list[int], list[float]]] = {}
    for i, w in enumerate(wr):
        for t, v in w.items():
            if t in postings:
                by_term.setdefault(t, ([], []))
                by_term[t][0].append(i)
                by_term[t][1].append(v)
    for t, (ri, rv) in by_term.items():
        ci, cv = postings[t]
        out[np.ix_(ri, ci)] += np.outer(rv, cv).astype(np.float32)
    return out


# --- Vectors ---------------------------------------------------------------------------


def language_of(tag: str | None) -> str:
    return (tag or "").split("-")[0].strip().lower()


def align_languages(vectors: np.ndarray, languages: list[str], min_count: int = 3) -> np.ndarray:
    """Move each minority language's mean vector onto the majority language's, renormalised.

    Articles with no language count as the majority. A language with fewer than `min_count`
    articles is left as it is (its mean is noise). Without a second language nothing changes.
    """
    langs = [language_of(x) for x in languages]
    counts = Counter(x for x in langs if x)
    if len(counts) < 2:
        return vectors
    major = counts.most_common(1)[0][0]
    langs = [x or major for x in langs]
    means = {
        g: vectors[[i for i, x in enumerate(langs) if x == g]].mean(axis=0)
        for g, c in Counter(langs).items()
        if c >= min_count
    }
    out = vectors.copy()
    for i, g in enumerate(langs):
        if g != major and g in means:
            v = out[i] - means[g] + means[major]
            out[i] = v / (np.linalg.norm(v) or 1.0)
    return out


def combined_similarity(
    cosine: np.ndarray, anchors: np.ndarray, anchor_weight: float
) -> np.ndarray:
    """The grouping similarity: cosine and anchor overlap, weighted, in [-1, 1]."""
    return (cosine + anchor_weight * anchors) / (1.0 + anchor_weight)


# --- Grouping --------------------------------------------------------------------------


def _components(sim: np.ndarray, threshold: float, units: list[list[int]]) -> list[list[int]]:
    parent = list(range(len(units)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    owner = {i: u for u, members in enumerate(units) for i in members}
    for i, j in zip(*np.nonzero(np.triu(sim >= threshold, 1))):
        a, b = find(owner[int(i)]), find(owner[int(j)])
        if a != b:
            parent[a] = b
    groups: dict[int, list[int]] = {}
    for u in range(len(units)):
        groups.setdefault(find(u), []).append(u)
    return list(groups.values())


def average_link(
    sim: np.ndarray, threshold: float, must_link: list[list[int]] | None = None
) -> list[list[int]]:
    """Clusters of indices: merge the closest pair while its mean similarity >= threshold.

    `must_link` lists groups that start together (a duplicate and its original). Average link
    never merges across single-link components at the same threshold, so each component is
    clustered alone. Every index ends in exactly one cluster.
    """
    n = len(sim)
    tied = {i for g in must_link or [] for i in g}
    units = [sorted(set(g)) for g in must_link or [] if g] + [
        [i] for i in range(n) if i not in tied
    ]
    clusters: list[list[int]] = []
    for comp in _components(sim, threshold, units):
        members = [list(units[u]) for u in comp]
        k = len(members)
        if k == 1:
            clusters.append(members[0])
            continue
        link = np.array([[sim[np.ix_(a, b)].mean() for b in members] for a in members])
        sizes = np.array([len(m) for m in members], dtype=float)
        alive = np.ones(k, dtype=bool)
        np.fill_diagonal(link, -np.inf)
        while True:
            masked = np.where(alive[:, None] & alive[None, :], link, -np.inf)
            i, j = divmod(int(np.argmax(masked)), k)
            if masked[i, j] < threshold:
                break
            link[i, :] = (sizes[i] * link[i, :] + sizes[j] * link[j, :]) / (sizes[i] + sizes[j])
            link[:, i] = link[i, :]
            link[i, i] = -np.inf
            sizes[i] += sizes[j]
            members[i] += members[j]
            alive[j] = False
        clusters += [sorted(members[i]) for i in range(k) if alive[i]]
    return sorted(clusters, key=lambda c: c[0])


def duplicate_groups(articles: list[dict[str, Any]]) -> list[list[int]]:
    """Index groups of articles tied by `duplicate_of` chains within the list."""
    index = {a["id"]: i for i, a in enumerate(articles)}
    groups: dict[int, list[int]] = {}
    for i, a in enumerate(articles):
        root, seen = a["id"], set()
        while root not in seen:
            seen.add(root)
            parent = articles[index[root]].get("duplicate_of")
            if parent is None or parent not in index:
                break
            root = parent
        groups.setdefault(root, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


# --- What represents a story --------------------------------------------------


def story_id(canonical_url: str) -> str:
    """A story's id, stable across runs: derived from its first article's canonical URL."""
    return "s-" + hashlib.sha1(canonical_url.encode()).hexdigest()[:12]


def representative(sim: np.ndarray, members: list[int]) -> int:
    """The member closest to the others on average (the earliest on a tie)."""
    if len(members) == 1:
        return members[0]
    block = sim[np.ix_(members, members)]
    score = (block.sum(axis=1) - np.diag(block)) / (len(members) - 1)
    return members[int(np.argmax(score))]


def top_keywords(
    docs: list[tuple[str, str]], df: Counter[str], n_docs: int, k: int = KEYWORDS
) -> list[str]:
    """The names the story's (title, body) pairs share most, headline names first, weighted
    by rarity across the window and baseline (`df` counts the articles naming each)."""
    weight: Counter[str] = Counter()
    surfaces: dict[str, Counter[str]] = {}
    for title, body in docs:
        in_title = {w.lower() for w in _TOKEN.findall(title)}
        seen = set()
        for key, surface in article_anchors(title, body):
            if not key.startswith("#"):
                surfaces.setdefault(key, Counter())[surface] += 1
                seen.add(key)
        weight.update({key: 2 if key in in_title else 1 for key in seen})
    ranked = sorted(weight, key=lambda t: (-weight[t] * math.log((1 + n_docs) / (1 + df[t])), t))
    return [surfaces[t].most_common(1)[0][0] for t in ranked[:k]]
