"""Stories and trends over the digest window (queue `analyze`); story labels (queue `llm`).

`build_stories` reads the window's articles and the baseline before it, groups the window into
stories (`tasks.stories`: names, figures and language-aligned vectors, average link), scores
each for a burst and stores them per run, replacing any earlier set. The trend of a story is
its distinct sources today against the rate the baseline predicts for the same topic (a Poisson
tail), weighed by novelty (how unlike any baseline article it is). `label_story` asks the LLM
for a label and synthesis of one trending story; any failure keeps the offline label. Scoring is
plain functions over counts; tasks only read, call them and upsert. Nothing here renders.
"""

from __future__ import annotations

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
from core.errors import TransientError
from core.settings import get_settings
from core.timeutil import parse_iso
from vectorstore import DatabaseUnavailable, connection, runs
from vectorstore import articles as store

from .app import app
from .guard import STORAGE_RETRY
from .providers import get_chat_model, invoke_limited
from .stories import (
    align_languages,
    anchor_similarity,
    anchor_terms,
    average_link,
    combined_similarity,
    duplicate_groups,
    representative,
    story_id,
    top_keywords,
)

log = logging.getLogger(__name__)

PRIOR_SOURCES = 0.5  # pseudo-count of baseline sources: an unseen topic is not impossible


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
    messages = [
        SystemMessage(prompts.render("label_system")),
        HumanMessage(
            prompts.render("label_user", article=prompts.article_slot(lead_title, "\n".join(lines)))
        ),
    ]
    raw = invoke_limited(model, messages).content  # type: ignore[attr-defined]
    text = raw if isinstance(raw, str) else json.dumps(raw)
    text = re.sub(r"^```(json)?|```$", "", text.strip(), flags=re.MULTILINE).strip()
    result = StoryLabel.model_validate(json.loads(text))
    if len(result.label.split()) > 16:
        raise ValueError(f"label has {len(result.label.split())} words, at most 12 wanted")
    return result


# --- Putting it together ---------------------------------------------------------------

BASELINE_CHUNK = 512  # baseline articles compared with the whole window at once


def baseline_signals(
    vecs: np.ndarray,
    terms: list[Counter[str]],
    nw: int,
    clusters: list[list[int]],
    params: TrendParams,
    chunk: int = BASELINE_CHUNK,
) -> list[tuple[Any, list[int]]]:
    """Per cluster of window articles (indices < nw): its highest similarity to any baseline
    article (indices >= nw), and the baseline articles whose mean similarity to its members
    reaches `baseline_match` (0-based in the baseline).

    The window x baseline similarity is built `chunk` baseline articles at a time and reduced
    at once, so memory is window x chunk, not window x (window + baseline)."""
    best: list[Any] = [None] * len(clusters)  # numpy scalars, as the dense max gave
    matched: list[list[int]] = [[] for _ in clusters]
    for start in range(nw, len(vecs), max(1, chunk)):
        end = min(len(vecs), start + max(1, chunk))
        sim = combined_similarity(
            vecs[:nw] @ vecs[start:end].T,
            anchor_similarity(terms[:nw], terms[start:end], terms),
            params.anchor_weight,
        )
        for k, members in enumerate(clusters):
            block = sim[members]
            top = block.max()
            best[k] = top if best[k] is None else max(best[k], top)
            hits = np.nonzero(block.mean(axis=0) >= params.baseline_match)[0]
            matched[k] += [start - nw + int(j) for j in hits]
    return list(zip(best, matched))


def analyze_window(
    window: list[dict[str, Any]],
    baseline: list[dict[str, Any]],
    *,
    window_start: datetime,
    window_hours: float,
    params: TrendParams,
    dims: int = 384,
    baseline_chunk: int = BASELINE_CHUNK,
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
    window_sim = combined_similarity(
        vecs[:nw] @ vecs[:nw].T,
        anchor_similarity(terms[:nw], terms[:nw], terms),
        params.anchor_weight,
    )
    clusters = average_link(window_sim, params.story_threshold, duplicate_groups(window))
    to_baseline = (
        baseline_signals(vecs, terms, nw, clusters, params, baseline_chunk) if baseline else []
    )

    df: Counter[str] = Counter()
    for t in terms:
        df.update(t.keys())
    slices = params.baseline_days * 24.0 / window_hours
    stories = []
    for k, members in enumerate(clusters):
        arts = [window[i] for i in members]
        sources = sorted({a["feed_url"] for a in arts})
        lead = window[representative(window_sim, members)]
        first = min(arts, key=lambda a: (a["placed_at"], a["id"]))
        novelty, expected = 1.0, expected_sources([], slices)
        if baseline:
            closest, near = to_baseline[k]
            novelty = float(1.0 - closest)
            matched = []
            for j in near:
                b = baseline[j]
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


@app.task(**STORAGE_RETRY)
def build_stories(
    run_id: str, as_of: str, window_hours: float, params: dict[str, Any] | None = None
) -> dict:
    """Group the window's articles into scored stories and store them for the run."""
    p = TrendParams.from_dict(params)
    end = parse_iso(as_of)
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
    autoretry_for=(DatabaseUnavailable, TransientError),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=3,
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
    except TransientError:
        raise  # no fleet-wide LLM slot free now: retried later
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
