"""State and context types of the graphs. Data only: no behaviour, no I/O.

State holds ids and primitives (it is checkpointed as msgpack). Per-run knobs live in
`RunContext`, which Studio shows as the graph's context; infrastructure (URLs, keys) is settings
and never appears here.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Literal, TypedDict

ArticleStatus = Literal["new", "unchanged", "duplicate", "near_duplicate", "skipped", "failed"]
Route = Literal["page", "process", "short", "empty", "unchanged", "recorded"]


@dataclass
class RunContext:
    """Per-run knobs, editable in Studio; defaults suit a daily run on a small fleet."""

    min_words: int = 30
    """A text with fewer words is its own summary (extractive), never sent to the LLM."""
    summary_words: int = 60
    """Word budget of a summary."""
    fetch_full_text: bool = True
    """Fetch a teaser's own page for its full text (also needs FETCH_FULL_TEXT on)."""
    near_duplicate_days: float = 3.0
    """How far around an article's date (days either side) copies of its text are looked for."""
    prefer_llm: bool = True
    """Summarize with the LLM when one is configured (else the extractive summarizer)."""
    queue_deadline_seconds: float = 900.0
    """How long a dispatched task may wait in its queue before it is dispatched again."""
    run_deadline_seconds: float = 300.0
    """How long a started task may run (its worker may have died) before it is dispatched again."""
    max_dispatches: int = 3
    """Dispatches of one task (the first and re-dispatches) before the article is failed."""
    retry_failed: bool = False
    """Process again the articles recorded as failed (otherwise they are left as they are)."""
    out_dir: str = "out"
    """Where the daily graph writes digest.md, digest.html, digest.xml and digest.json."""
    story_threshold: float = 0.39
    """Average-link similarity (cosine mixed with shared names and figures) that joins two
    groups of the window's articles into one story; lower gives fewer, larger stories."""
    anchor_weight: float = 1.5
    """Weight of shared names and figures against embedding cosine in that similarity (what
    groups the same event across languages)."""
    baseline_days: float = 7.0
    """Days before the window that say how much coverage each topic usually gets."""
    baseline_match: float = 0.35
    """Similarity at which a baseline article counts as the same topic as a story."""
    trend_min_sources: int = 3
    """Distinct sources a story needs in the window to trend."""
    trend_min_burst: float = 2.0
    """Minimum burst to trend: -log10 of the Poisson chance of the story's source count given
    the baseline's rate for its topic (2.0: a 1-in-100 day)."""
    trend_min_novelty: float = 0.40
    """Minimum novelty to trend: 1 minus the similarity to the closest baseline article."""
    trend_developing_burst: float = 4.0
    """A burst this large trends whatever its novelty (a developing story: earlier coverage,
    then a much larger wave in the window; 4.0 is a 1-in-10,000 day)."""
    label_with_llm: bool = True
    """Label trending stories with the LLM when one is configured (else the most
    representative headline and the top keywords)."""


class ArticleState(TypedDict, total=False):
    """One article's path through the article graph."""

    article_id: int
    """The article being planned (input)."""
    run_id: str
    """The run this processing belongs to (input)."""
    route: Route
    """What plan decided: fetch the page first, full processing, a short text, no text, or
    nothing to do."""
    content_hash: str
    """The content the plan saw; recorded as processed when the article is done."""
    placed_at: float
    """When the article is placed in time (published, else first seen), as a Unix time."""
    status: ArticleStatus
    """How processing ended (output)."""
    duplicate_of: int | None
    """The article this one duplicates, when it does."""
    summary_source: str | None
    """'llm' or 'extractive' when a summary was written."""
    text_source: str | None
    """'page' when the article's own page gave its text, else 'feed'."""
    error: str | None
    """Why the article failed, in words a user can act on."""


class ArticleTask(TypedDict):
    """What the daily graph sends to each article branch."""

    article_id: int
    run_id: str


class DailyState(TypedDict, total=False):
    """The daily run: collect feeds, fan out articles, group stories, publish."""

    run_id: str
    """Id of this run (input; run_daily makes one)."""
    feeds_file: str
    """Feed list: one URL or path per line, or OPML (input)."""
    as_of: str
    """End of the digest window, ISO 8601 UTC (input)."""
    window_hours: float
    """Length of the digest window in hours (input)."""
    max_articles: int | None
    """Process at most this many articles, newest first (input)."""
    feeds: list[dict]
    """Per listed feed: url as listed, status, error, article count."""
    article_ids: list[int]
    """Articles read in this run, to be planned one by one."""
    outcomes: Annotated[list[dict], operator.add]
    """One {article_id, status} per finished article branch (fan-in)."""
    stories: int
    """Stories built over the window."""
    trending: int
    """Stories flagged as trending."""
    digest_dir: str
    """Where the digest files were written."""
