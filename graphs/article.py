"""The article graph: plans one article and delegates every heavy step to the Celery fleet.

    plan -> embed -> near_duplicate -> summarize -> classify -> store     (new content)
    plan -> embed -> near_duplicate -> store        (near-duplicate of an earlier article)
    plan -> embed -> store                          (too short to summarize: skipped)
    plan -> store                                   (unchanged since processed, exact duplicate,
                                                     failed before and not retried)
    plan -> END                                     (this run already recorded the outcome)

`plan` reads the article and decides; `embed` joins a batch on the embed queue; the
near-duplicate check asks pgvector for earlier articles above the configured cosine similarity;
`summarize` runs on the llm queue (on the embed queue when summaries are extractive, which needs
the embedding model); `classify` adds category and tags where the LLM did not; `store` records
the outcome. A step whose task gives no result in time is dispatched again, then the article is
recorded as failed with the reason, and the run goes on. Exported as `graph`, compiled without
a checkpointer (run_daily attaches one).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from core.settings import get_settings
from graphs.runtime import (
    EXPECTED_FAILURES,
    EmbedBatcher,
    db_call,
    deadlines_from,
    ensure_workers,
    get_dispatcher,
)
from graphs.state import ArticleState, RunContext
from tasks.classify import classify_article
from tasks.embed import embed_batch
from tasks.store import store_outcome
from tasks.summarize import summarize_article
from vectorstore import articles as store
from vectorstore import connection, runs

log = logging.getLogger(__name__)

FINAL_STATES = ("processed", "duplicate", "near_duplicate", "skipped")
RECORDED = ("new", "unchanged", "duplicate", "near_duplicate", "skipped", "failed")


def _ctx(runtime: Runtime[RunContext]) -> RunContext:
    return runtime.context or RunContext()


def _load_plan(article_id: int, run_id: str, retry_failed: bool) -> dict:
    with connection() as conn:
        recorded = runs.run_article_status(conn, run_id, article_id)
        a = store.get_article(conn, article_id)
        same_content = a["processed_hash"] == a["content_hash"]
        unchanged = same_content and a["state"] in FINAL_STATES
        still_failed = same_content and a["state"] == "failed" and not retry_failed
        dup = (
            None
            if unchanged or still_failed
            else store.first_with_hash(conn, a["content_hash"], article_id)
        )
    placed = a["published"] or a["first_seen"]
    return {
        "recorded": recorded if recorded in RECORDED else None,
        "content_hash": a["content_hash"],
        "words": len(a["body"].split()),
        "unchanged": unchanged,
        "still_failed": (a["error"] or "failed earlier") if still_failed else None,
        "duplicate_of": dup,
        "placed_at": placed.timestamp(),
    }


async def plan(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Decide the article's path: recorded already, unchanged, duplicate, too short, or new."""
    ctx = _ctx(runtime)
    await asyncio.to_thread(ensure_workers)
    p = await db_call(_load_plan, state["article_id"], state["run_id"], ctx.retry_failed)
    base = {"content_hash": p["content_hash"], "placed_at": p["placed_at"]}
    if p["recorded"]:  # a resumed run: this article's branch already finished
        return {**base, "route": "recorded", "status": p["recorded"]}
    if p["unchanged"]:
        return {**base, "route": "unchanged", "status": "unchanged"}
    if p["still_failed"]:  # same content failed before: left alone unless --retry-failed
        return {**base, "route": "unchanged", "status": "failed", "error": p["still_failed"]}
    if p["duplicate_of"] is not None:
        return {**base, "route": "duplicate", "status": "duplicate",
                "duplicate_of": p["duplicate_of"]}  # fmt: skip
    return {**base, "route": "short" if p["words"] < ctx.min_words else "process"}


def route_after_plan(state: ArticleState) -> str:
    """plan -> embed for content to process; store for nothing-to-do and duplicates."""
    route = state.get("route")
    if route in ("process", "short"):
        return "embed"
    if route in ("unchanged", "duplicate"):
        return "store"
    if route == "recorded":
        return END
    raise ValueError(f"plan produced no route for article {state.get('article_id')}: {route!r}")


def _embed_batcher(ctx: RunContext) -> EmbedBatcher:
    return get_dispatcher().batcher(
        "embed", lambda ids: embed_batch.s(ids), get_settings().embed_batch_size,
        deadlines_from(ctx),
    )  # fmt: skip


async def embed(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Embed the article as part of a batch (EMBED_BATCH_SIZE) on the embed queue."""
    key = (state.get("placed_at", 0.0), state["article_id"])
    try:
        await _embed_batcher(_ctx(runtime)).submit(state["article_id"], key)
    except EXPECTED_FAILURES as exc:  # recorded on the article, the run goes on
        log.warning("article %s: embedding failed: %s", state["article_id"], exc)
        return {"status": "failed", "error": f"embedding failed: {exc}"}
    return {"status": "skipped"} if state["route"] == "short" else {}


def route_after_embed(state: ArticleState) -> str:
    """embed -> near_duplicate, unless the article failed or is too short to summarize."""
    if state.get("status") in ("failed", "skipped"):
        return "store"
    if state.get("route") == "process":
        return "near_duplicate"
    raise ValueError(f"impossible state after embed: {state!r}")


def _find_near_duplicate(article_id: int, threshold: float, days: float) -> int | None:
    with connection() as conn:
        a = store.get_article(conn, article_id)
        vector = store.article_vector(conn, article_id)
        if vector is None:
            return None
        placed = a["published"] or a["first_seen"]
        hits = store.nearest_articles(
            conn, vector, limit=10, exclude_id=article_id, since=placed - timedelta(days=days)
        )
    earlier = [
        h
        for h in hits
        if h["similarity"] >= threshold
        and ((h["published"] or h["first_seen"]), h["id"]) < (placed, article_id)
        and h["state"] != "failed"
    ]
    if not earlier:
        return None
    first = min(earlier, key=lambda h: ((h["published"] or h["first_seen"]), h["id"]))
    if first["state"] in ("duplicate", "near_duplicate") and first["duplicate_of"]:
        return int(first["duplicate_of"])
    return int(first["id"])


async def near_duplicate(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Link to an earlier article above the cosine threshold (pgvector HNSW) instead of
    summarizing the same news again."""
    ctx = _ctx(runtime)
    await _embed_batcher(ctx).settle_before((state.get("placed_at", 0.0), state["article_id"]))
    original = await db_call(
        _find_near_duplicate, state["article_id"], ctx.near_duplicate_threshold,
        ctx.near_duplicate_days,
    )  # fmt: skip
    if original is None:
        return {}
    return {"status": "near_duplicate", "duplicate_of": original}


def route_after_near_duplicate(state: ArticleState) -> str:
    """A near-duplicate is stored as such; anything else is summarized."""
    return "store" if state.get("status") == "near_duplicate" else "summarize"


async def summarize(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Summarize on the llm queue (or, extractive, on the embed queue where the model lives)."""
    ctx = _ctx(runtime)
    use_llm = ctx.prefer_llm and get_settings().llm_enabled
    sig = summarize_article.s(
        state["article_id"], "llm" if use_llm else "extractive", ctx.summary_words
    ).set(queue="llm" if use_llm else "embed")
    try:
        result = await get_dispatcher().call(sig, deadlines_from(ctx))
    except EXPECTED_FAILURES as exc:  # recorded on the article, the run goes on
        log.warning("article %s: summary failed: %s", state["article_id"], exc)
        return {"status": "failed", "error": f"summary failed: {exc}"}
    return {"status": "new", "summary_source": result["summary_source"]}


def route_after_summarize(state: ArticleState) -> str:
    """Classify what was summarized; a failed summary goes straight to store."""
    return "store" if state.get("status") == "failed" else "classify"


async def classify(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Category and tags: the LLM gave them with the summary; otherwise classify offline."""
    if state.get("summary_source") == "llm":
        return {}
    ctx = _ctx(runtime)
    try:
        await get_dispatcher().call(classify_article.s(state["article_id"]), deadlines_from(ctx))
    except EXPECTED_FAILURES as exc:  # a missing category does not fail the article
        log.warning("article %s: classification failed: %s", state["article_id"], exc)
    return {}


async def store_node(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Record the outcome for the run and the article's lasting state."""
    status = state.get("status") or "failed"
    sig = store_outcome.s(
        state["run_id"], state["article_id"], status, state.get("duplicate_of"),
        state.get("error"), state.get("content_hash"),
    )  # fmt: skip
    await get_dispatcher().call(sig, deadlines_from(_ctx(runtime)))
    return {"status": status}


builder = StateGraph(ArticleState, context_schema=RunContext)
builder.add_node("plan", plan)
builder.add_node("embed", embed)
builder.add_node("near_duplicate", near_duplicate)
builder.add_node("summarize", summarize)
builder.add_node("classify", classify)
builder.add_node("store", store_node)
builder.add_edge(START, "plan")
builder.add_conditional_edges("plan", route_after_plan, ["embed", "store", END])
builder.add_conditional_edges("embed", route_after_embed, ["near_duplicate", "store"])
builder.add_conditional_edges("near_duplicate", route_after_near_duplicate, ["summarize", "store"])
builder.add_conditional_edges("summarize", route_after_summarize, ["classify", "store"])
builder.add_edge("classify", "store")
builder.add_edge("store", END)

graph = builder.compile(name="article")
