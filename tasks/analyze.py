"""Stories and trends over the digest window (queue `analyze`); story labels (queue `llm`).

`build_stories` reads the window's articles and the baseline before it, groups the window into
stories (`tasks.stories`: names, figures and language-aligned vectors, average link), scores
each for a burst and stores them per run, replacing any earlier set. The trend of a story is
its independent texts today against the rate the baseline predicts for the same topic
(`tasks.trends`; copies of one text count once). `label_story` asks the LLM
for a label and synthesis of one trending story; any failure keeps the offline label. Scoring is
plain functions over counts; tasks only read, call them and upsert. Nothing here renders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

import prompts
from core.errors import TransientError
from core.redact import redact_url
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
from .summarize import split_sentences
from .trends import (
    TrendParams,
    expected_sources,
    is_trending,
    timeline,
    trend_score,
)

__all__ = ["TrendParams", "analyze_window", "build_stories", "label_story"]

log = logging.getLogger(__name__)

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


def root_of(article: dict[str, Any]) -> int:
    """The kept article of a copy (itself when the article is a distinct text)."""
    return int(article.get("duplicate_of") or article["id"])


def one_line(summary: str | None, max_words: int = 30) -> str | None:
    """The first sentence of a summary, within `max_words`."""
    if not summary:
        return None
    first = (split_sentences(summary) or [summary])[0]
    words = first.split()
    return first if len(words) <= max_words else " ".join(words[:max_words]) + "…"


def story_key(arts: list[dict[str, Any]]) -> str:
    """What a story's texts depend on: its distinct texts and their content."""
    parts = sorted({f"{root_of(a)}:{a.get('content_hash', '')}" for a in arts})
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def independent_sources(arts: list[dict[str, Any]]) -> list[str]:
    """Outlets that wrote their own text: one per distinct text (copies add none)."""
    first: dict[int, dict[str, Any]] = {}
    for a in sorted(arts, key=lambda a: (root_of(a) != a["id"], a["placed_at"], a["id"])):
        first.setdefault(root_of(a), a)
    return sorted({a["feed_url"] for a in first.values()})


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

    Each article is a dict with id, title, text, canonical_url, feed_url, language, placed_at,
    duplicate_of, content_hash, summary (its kept text's) and embedding (a unit vector, or
    None).
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
    terms = [anchor_terms(a["title"], a["text"]) for a in everything]
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
        carriers = sorted({a["feed_url"] for a in arts})
        sources = independent_sources(arts)
        texts = len({root_of(a) for a in arts})
        kept = [i for i in members if root_of(window[i]) == window[i]["id"]] or members
        lead = window[representative(window_sim, kept)]
        first = min(arts, key=lambda a: (a["placed_at"], a["id"]))
        novelty, expected = 1.0, expected_sources([], slices)
        earlier: list[datetime] = []
        if baseline:
            closest, near = to_baseline[k]
            novelty = float(1.0 - closest)
            matched = []
            for j in near:
                b = baseline[j]
                if root_of(b) != b["id"]:
                    continue  # a copy in the baseline is not another text
                age = window_start - b["placed_at"]
                matched.append((b["feed_url"], int(age / timedelta(hours=window_hours))))
                earlier.append(b["placed_at"])
            expected = expected_sources(matched, slices)
        score, burst = trend_score(len(sources), expected, novelty)
        trending = is_trending(len(sources), burst, novelty, params)
        stories.append(
            {
                "id": story_id(first["canonical_url"]),
                "key": story_key(arts),
                "label": lead["title"],
                "synthesis": lead.get("summary") if trending else None,
                "summary": lead.get("summary") if trending else one_line(lead.get("summary")),
                "keywords": top_keywords(
                    [(a["title"], a["text"]) for a in arts], df, len(everything)
                ),
                "article_ids": [a["id"] for a in arts],
                "sources": [redact_url(s) for s in carriers],  # shown, so secrets masked
                "independent_texts": texts,
                "trend_score": round(score, 4),
                "is_trending": trending,
                "label_source": "offline",
                "signals": {
                    "sources": len(sources),
                    "independent_texts": texts,
                    "carriers": len(carriers),
                    "articles": len(arts),
                    "expected_sources": round(expected, 3),
                    "burst": round(burst, 3),
                    "novelty": round(novelty, 3),
                    "timeline": timeline(
                        window_start, window_hours, int(round(slices)), earlier, texts
                    ),
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
    """Label one story with the LLM; on any LLM failure the offline label stays (recorded).

    A story whose texts are unchanged since it was labelled reuses that label: a re-run over
    the same content asks the LLM nothing."""
    with connection() as conn:
        story = runs.get_story(conn, run_id, story_id)
        if story is None:
            raise LookupError(f"no story {story_id} in run {run_id}")
        cached = runs.story_text(conn, story["key"]) if story.get("key") else None
        if cached is not None and cached["source"] == "llm":
            runs.set_story_label(
                conn, run_id, story_id, label=cached["label"], synthesis=cached["synthesis"],
                label_source="llm",
            )  # fmt: skip
            return {"story_id": story_id, "label_source": "llm", "cached": True}
        articles = [
            a for a in store.articles_for_display(conn, story["article_ids"])
            if a.get("duplicate_of") is None
        ]  # fmt: skip
    try:
        result = llm_label(story["label"], articles)
    except TransientError:
        raise  # no fleet-wide LLM slot free now: retried later
    except Exception as exc:  # noqa: BLE001 - any LLM failure: the offline label stays
        log.warning("story %s: LLM label failed, keeping the offline one: %s", story_id, exc)
        return {"story_id": story_id, "label_source": "offline", "note": str(exc)[:300]}
    label, synthesis = result.label.strip(), result.synthesis.strip()
    with connection() as conn:
        runs.set_story_label(
            conn, run_id, story_id, label=label, synthesis=synthesis, label_source="llm"
        )
        if story.get("key"):
            runs.save_story_text(conn, story["key"], label=label, synthesis=synthesis,
                                 source="llm")  # fmt: skip
    return {"story_id": story_id, "label_source": "llm", "cached": False}
