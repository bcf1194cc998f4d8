"""The article graph: plans one article and delegates every heavy step to the Celery fleet.

    plan -> embed -> summarize -> store        (new content)
    plan -> embed -> store                     (too short to summarize: skipped)
    plan -> store                              (unchanged since processed, or exact duplicate)

`plan` reads the article and decides; `embed` joins a batch of the embedding queue; `summarize`
runs on the LLM queue (on the embed queue when summaries are extractive, which needs the
embedding model); `store` records the outcome. A step whose task gives no result in time is
dispatched again, then the article is recorded as failed with the reason and the run goes on.
Exported as `graph`, compiled without a checkpointer (run_daily attaches one).
"""

from __future__ import annotations

import asyncio
import logging

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from core.errors import AMLError
from core.settings import get_settings
from tasks.embed import embed_batch
from tasks.store import store_outcome
from tasks.summarize import summarize_article
from vectorstore import articles as store
from vectorstore import connection

from .runtime import deadlines_from, ensure_workers, get_dispatcher
from .state import ArticleState, RunContext

log = logging.getLogger(__name__)

FINAL_STATES = ("processed", "duplicate", "near_duplicate", "skipped")


def _load_plan(article_id: int, retry_failed: bool) -> dict:
    with connection() as conn:
        a = store.get_article(conn, article_id)
        unchanged = a["processed_hash"] == a["content_hash"] and (
            a["state"] in FINAL_STATES or (a["state"] == "failed" and not retry_failed)
        )
        dup = None if unchanged else store.first_with_hash(conn, a["content_hash"], article_id)
    return {
        "content_hash": a["content_hash"],
        "words": len(a["body"].split()),
        "unchanged": unchanged,
        "duplicate_of": dup,
        "state": a["state"],
    }


async def plan(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Decide the article's path: nothing to do, duplicate, too short, or full processing."""
    ctx = runtime.context or RunContext()
    await asyncio.to_thread(ensure_workers)
    p = await asyncio.to_thread(_load_plan, state["article_id"], ctx.retry_failed)
    if p["unchanged"]:
        return {"route": "unchanged", "content_hash": p["content_hash"], "status": "unchanged"}
    if p["duplicate_of"] is not None:
        return {
            "route": "duplicate",
            "content_hash": p["content_hash"],
            "status": "duplicate",
            "duplicate_of": p["duplicate_of"],
        }
    route = "short" if p["words"] < ctx.min_words else "process"
    return {"route": route, "content_hash": p["content_hash"]}


def route_after_plan(state: ArticleState) -> str:
    """plan -> embed for content to process, store for nothing-to-do and duplicates."""
    route = state.get("route")
    if route in ("process", "short"):
        return "embed"
    if route in ("unchanged", "duplicate"):
        return "store"
    raise ValueError(f"plan produced no route for article {state.get('article_id')}: {route!r}")


async def embed(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Embed the article as part of a batch (EMBED_BATCH_SIZE) on the embed queue."""
    ctx = runtime.context or RunContext()
    disp = get_dispatcher()
    batcher = disp.batcher(
        "embed",
        lambda ids: embed_batch.s(ids),
        get_settings().embed_batch_size,
        deadlines_from(ctx),
    )
    try:
        await batcher.submit(state["article_id"])
    except (AMLError, Exception) as exc:  # noqa: BLE001 - recorded on the article, run goes on
        log.warning("article %s: embedding failed: %s", state["article_id"], exc)
        return {"status": "failed", "error": f"embedding failed: {exc}"}
    if state["route"] == "short":
        return {"status": "skipped"}
    return {}


def route_after_embed(state: ArticleState) -> str:
    """embed -> summarize unless the article failed or is too short to summarize."""
    if state.get("status") in ("failed", "skipped"):
        return "store"
    if state.get("route") == "process":
        return "summarize"
    raise ValueError(f"impossible state after embed: {state!r}")


async def summarize(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Summarize on the LLM queue (or, extractive, on the embed queue where the model lives)."""
    ctx = runtime.context or RunContext()
    use_llm = ctx.prefer_llm and get_settings().llm_enabled
    sig = summarize_article.s(
        state["article_id"], "llm" if use_llm else "extractive", ctx.summary_words
    ).set(queue="llm" if use_llm else "embed")
    try:
        result = await get_dispatcher().call(sig, deadlines_from(ctx))
    except Exception as exc:  # noqa: BLE001 - recorded on the article, run goes on
        log.warning("article %s: summary failed: %s", state["article_id"], exc)
        return {"status": "failed", "error": f"summary failed: {exc}"}
    return {"status": "new", "summary_source": result["summary_source"]}


async def store_node(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Record the outcome for the run and the article's lasting state."""
    ctx = runtime.context or RunContext()
    status = state.get("status") or "failed"
    sig = store_outcome.s(
        state["run_id"],
        state["article_id"],
        status,
        state.get("duplicate_of"),
        state.get("error"),
        state.get("content_hash"),
    )
    await get_dispatcher().call(sig, deadlines_from(ctx))
    return {"status": status}


builder = StateGraph(ArticleState, context_schema=RunContext)
builder.add_node("plan", plan)
builder.add_node("embed", embed)
builder.add_node("summarize", summarize)
builder.add_node("store", store_node)
builder.add_edge(START, "plan")
builder.add_conditional_edges("plan", route_after_plan, ["embed", "store"])
builder.add_conditional_edges("embed", route_after_embed, ["summarize", "store"])
builder.add_edge("summarize", "store")
builder.add_edge("store", END)

graph = builder.compile(name="article")
