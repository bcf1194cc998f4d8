"""Stories and trends over the digest window (queue `analyze`); story labels (queue `llm`).

`build_stories` reads the window's articles and the baseline before it, groups the window into
stories and scores each for a burst, then stores them per run (replacing any earlier set).
`label_story` asks the LLM for a label and synthesis of one trending story. The logic lives in
plain functions that take vectors, counts and texts, so it can be checked without a database:

- similarity: cosine of the article vectors, with each minority language's mean moved onto the
  majority's (an English-only model otherwise pulls same-language articles together), averaged
  with an IDF-weighted overlap of *anchors* (names and figures, which survive translation);
- grouping: average-link clustering over that similarity, run inside each connected component;
  duplicates are tied to their original before clustering;
- trends: distinct sources today against the rate the baseline predicts for the same topic
  (Poisson tail), times novelty (how unlike any baseline article the story is).
Tasks only read, call these and upsert. Nothing here renders or publishes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

import prompts
from core.settings import get_settings
from vectorstore import DatabaseUnavailable, connection, runs
from vectorstore import articles as store

from .app import app
from .providers import get_chat_model

log = logging.getLogger(__name__)

PRIOR_SOURCES = 0.5  # pseudo-count of baseline sources: an unseen topic is not impossible
KEYWORDS = 5
IDF_FLOOR = 1.0  # smoothed IDF (as scikit-learn's smooth_idf): a name in every article still counts


@dataclass(frozen=True)
class TrendParams:
    """Grouping and trend thresholds (the daily graph passes its RunContext values)."""

    story_threshold: float = 0.39
    anchor_weight: float = 1.5
    baseline_days: float = 7.0
    baseline_match: float = 0.35
    trend_min_sources: int = 3
    trend_min_burst: float = 2.0
    trend_min_novelty: float = 0.40

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrendParams:
        """Parameters from a task argument; an unknown name is an error, not ignored."""
        values = dict(values or {})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown trend parameters: {sorted(unknown)}")
        return cls(**values)


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


# --- Trends ----------------------------------------------------------------------------


def poisson_surprise(observed: int, expected: float) -> float:
    """-log10 P(X >= observed) for X ~ Poisson(expected): how unlikely today's count is."""
    if observed <= 0:
        return 0.0
    lam = max(float(expected), 1e-9)
    log_terms, k = [], observed
    while True:
        log_terms.append(-lam + k * math.log(lam) - math.lgamma(k + 1))
        if k > lam and log_terms[-1] < log_terms[0] - 40:
            break
        k += 1
    top = max(log_terms)
    log_p = top + math.log(sum(math.exp(t - top) for t in log_terms))
    return max(0.0, -log_p / math.log(10))


def expected_sources(matched: list[tuple[str, int]], slices: float) -> float:
    """Sources per window the baseline predicts: distinct (source, slice) pairs among the
    baseline articles on the same topic, averaged over the baseline's window-long slices."""
    return (len(set(matched)) + PRIOR_SOURCES) / max(slices, 1.0)


def trend_score(sources: int, expected: float, novelty: float) -> tuple[float, float]:
    """(score, burst): burst is the Poisson surprise of today's distinct sources; the score
    weighs it by novelty, so a story seen before ranks below a new one of the same size."""
    burst = poisson_surprise(sources, expected)
    return burst * max(0.0, min(1.0, novelty)), burst


def is_trending(sources: int, burst: float, novelty: float, params: TrendParams) -> bool:
    """Enough outlets, an unlikely volume for the topic, and not a rerun of the baseline."""
    return (
        sources >= params.trend_min_sources
        and burst >= params.trend_min_burst
        and novelty >= params.trend_min_novelty
    )


# --- Labels ----------------------------------------------------------------------------


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


class StoryLabel(BaseModel):
    """What the LLM must return for one story."""

    label: str = Field(min_length=1, max_length=160)
    synthesis: str = Field(min_length=1, max_length=1200)


def llm_label(lead_title: str, articles: list[dict[str, Any]]) -> StoryLabel:
    """Ask the LLM to name a story from its articles' summaries (raises when unusable)."""
    from langchain_core.messages import HumanMessage, SystemMessage

    lines = [
        f"- {a['feed_title'] or a['feed_url']}: {a['title']}. {a['summary'] or ''}".strip()
        for a in articles
    ]
    model = get_chat_model(model_kwargs={"response_format": {"type": "json_object"}})
    raw = model.invoke(
        [
            SystemMessage(prompts.render("label_system")),
            HumanMessage(
                prompts.render(
                    "label_user", article=prompts.article_slot(lead_title, "\n".join(lines))
                )
            ),
        ]
    ).content
    text = raw if isinstance(raw, str) else json.dumps(raw)
    text = re.sub(r"^```(json)?|```$", "", text.strip(), flags=re.MULTILINE).strip()
    result = StoryLabel.model_validate(json.loads(text))
    if len(result.label.split()) > 16:
        raise ValueError(f"label has {len(result.label.split())} words, at most 12 wanted")
    return result


# --- Putting it together ---------------------------------------------------------------


def analyze_window(
    window: list[dict[str, Any]],
    baseline: list[dict[str, Any]],
    *,
    window_start: datetime,
    window_hours: float,
    params: TrendParams,
    dims: int = 384,
) -> list[dict[str, Any]]:
    """Stories of the window (which starts at `window_start`), scored against the baseline
    (the articles before it), trending first.

    Each article is a dict with id, title, body, canonical_url, feed_url, language, placed_at,
    duplicate_of, summary and embedding (a unit vector, or None).
    """
    if not window:
        return []
    everything = window + baseline
    nw = len(window)
    vecs = np.stack(
        [
            np.zeros(dims, np.float32) if a["embedding"] is None else a["embedding"]
            for a in everything
        ]
    )
    vecs = align_languages(vecs, [a.get("language") for a in everything])
    terms = [anchor_terms(a["title"], a["body"]) for a in everything]
    anchors = anchor_similarity(terms[:nw], terms, terms)
    sim = combined_similarity(vecs[:nw] @ vecs.T, anchors, params.anchor_weight)
    window_sim = sim[:, :nw]
    clusters = average_link(window_sim, params.story_threshold, duplicate_groups(window))

    df: Counter[str] = Counter()
    for t in terms:
        df.update(t.keys())
    slices = params.baseline_days * 24.0 / window_hours
    stories = []
    for members in clusters:
        arts = [window[i] for i in members]
        sources = sorted({a["feed_url"] for a in arts})
        lead = window[representative(window_sim, members)]
        first = min(arts, key=lambda a: (a["placed_at"], a["id"]))
        novelty, expected = 1.0, expected_sources([], slices)
        if baseline:
            to_base = sim[np.ix_(members, range(nw, len(everything)))]
            novelty = float(1.0 - to_base.max())
            matched = []
            for j in np.nonzero(to_base.mean(axis=0) >= params.baseline_match)[0]:
                b = baseline[int(j)]
                age = window_start - b["placed_at"]
                matched.append((b["feed_url"], int(age / timedelta(hours=window_hours))))
            expected = expected_sources(matched, slices)
        score, burst = trend_score(len(sources), expected, novelty)
        trending = is_trending(len(sources), burst, novelty, params)
        stories.append(
            {
                "id": story_id(first["canonical_url"]),
                "label": lead["title"],
                "synthesis": lead.get("summary") if trending else None,
                "keywords": top_keywords(
                    [(a["title"], a["body"]) for a in arts], df, len(everything)
                ),
                "article_ids": [a["id"] for a in arts],
                "sources": sources,
                "trend_score": round(score, 4),
                "is_trending": trending,
                "label_source": "offline",
                "signals": {
                    "sources": len(sources),
                    "articles": len(arts),
                    "expected_sources": round(expected, 3),
                    "burst": round(burst, 3),
                    "novelty": round(novelty, 3),
                },
            }
        )
    stories.sort(key=lambda s: (not s["is_trending"], -s["trend_score"], s["id"]))
    return stories


@app.task(
    autoretry_for=(DatabaseUnavailable,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=5,
)
def build_stories(
    run_id: str, as_of: str, window_hours: float, params: dict[str, Any] | None = None
) -> dict:
    """Group the window's articles into scored stories and store them for the run."""
    p = TrendParams.from_dict(params)
    end = datetime.fromisoformat(as_of)
    start = end - timedelta(hours=window_hours)
    with connection() as conn:
        window = store.analysis_articles(conn, start, end)
        baseline = store.analysis_articles(conn, start - timedelta(days=p.baseline_days), start)
        missing = {
            a["duplicate_of"]
            for a in window + baseline
            if a["embedding"] is None and a["duplicate_of"]
        }
        borrowed = store.article_vectors(conn, sorted(missing)) if missing else {}
    for a in window + baseline:
        if a["embedding"] is None and a["duplicate_of"] in borrowed:
            a["embedding"] = borrowed[a["duplicate_of"]]
    stories = analyze_window(
        window,
        baseline,
        window_start=start,
        window_hours=window_hours,
        params=p,
        dims=get_settings().embedding_dimensions,
    )
    with connection() as conn:
        runs.replace_stories(conn, run_id, stories)
        runs.store_story_details(conn, run_id, {s["id"]: s for s in stories})
    trending = [s["id"] for s in stories if s["is_trending"]]
    return {"stories": len(stories), "trending": len(trending), "trending_ids": trending}


@app.task(
    autoretry_for=(DatabaseUnavailable,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=5,
)
def label_story(run_id: str, story_id: str) -> dict:
    """Label one story with the LLM; on any LLM failure the offline label stays (recorded)."""
    with connection() as conn:
        story = runs.get_story(conn, run_id, story_id)
        if story is None:
            raise LookupError(f"no story {story_id} in run {run_id}")
        articles = store.articles_for_display(conn, story["article_ids"])
    try:
        result = llm_label(story["label"], articles)
    except Exception as exc:  # noqa: BLE001 - any LLM failure: the offline label stays
        log.warning("story %s: LLM label failed, keeping the offline one: %s", story_id, exc)
        return {"story_id": story_id, "label_source": "offline", "note": str(exc)[:300]}
    with connection() as conn:
        runs.set_story_label(
            conn,
            run_id,
            story_id,
            label=result.label.strip(),
            synthesis=result.synthesis.strip(),
            label_source="llm",
        )
    return {"story_id": story_id, "label_source": "llm"}
