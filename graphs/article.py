"""The article graph: plans one article and delegates every heavy step to the Celery fleet.

    plan -> [page] -> copies -> embed -> summarize -> classify -> store    (a distinct text)
    plan -> [page] -> copies -> store    (a copy of another article's text: exact or near)
    plan -> store                        (unchanged since processed, no text at all, failed
                                          before and not retried)
    plan -> END                          (this run already recorded the outcome)

`plan` reads the article and decides. When the feed text is a teaser (`FULLTEXT_MIN_WORDS`, or
visibly cut) and full text is on, `page` has the ingest queue fetch the article's own page
(`tasks.pages`: safe fetcher, robots.txt, per-host limits) and every later step works from the
page text; a page failure leaves the article on its feed text, with the reason. `copies` asks
the analyze queue whether the text is a copy of another stored article (exact or lightly
edited: `tasks.copycheck`), which links it to the earliest published copy. Only distinct texts
go on: `embed` joins a batch on the embed queue; `summarize` runs on the llm queue (on the
embed queue when the summary is extractive, which needs the embedding model; a text shorter
than `min_words` is its own summary, never sent to the LLM); `classify` adds category and tags
where the LLM did not; `store` records the outcome. A step whose task gives no result in time
is dispatched again, then the article is recorded as failed with the reason, and the run goes
on. Exported as `graph`, compiled without a checkpointer (run_daily attaches one).
"""

from __future__ import annotations

import asyncio
import logging

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
from tasks.copycheck import check_copy
from tasks.embed import embed_batch
from tasks.pages import fetch_page, needs_page
from tasks.store import store_outcome
from tasks.summarize import summarize_article
from vectorstore import articles as store
from vectorstore import connection, pages, runs

log = logging.getLogger(__name__)

FINAL_STATES = ("processed", "duplicate", "near_duplicate", "skipped")
RECORDED = ("new", "unchanged", "duplicate", "near_duplicate", "skipped", "failed")


def _ctx(runtime: Runtime[RunContext]) -> RunContext:
    return runtime.context or RunContext()


def _load_plan(article_id: int, run_id: str, retry_failed: bool) -> dict:
    with connection() as conn:
        recorded = runs.run_article_status(conn, run_id, article_id)
        a = store.get_article(conn, article_id)
        page = pages.get_page(conn, article_id) if retry_failed else None
    same_content = a["processed_hash"] == a["content_hash"]
    page_retry = bool(
        page and page["feed_hash"] == a["content_hash"] and page["status"] == "failed"
        and page["transient"]
    )  # fmt: skip
    placed = a["published"] or a["first_seen"]
    return {
        "recorded": recorded if recorded in RECORDED else None,
        "content_hash": a["content_hash"],
        "words": len(a["text"].split()),
        "teaser": needs_page(a["body"]),
        "unchanged": same_content and a["state"] in FINAL_STATES and not page_retry,
        "page_retry": page_retry,
        "still_failed": (a["error"] or "failed earlier")
        if same_content and a["state"] == "failed" and not retry_failed
        else None,
        "placed_at": placed.timestamp(),
    }


async def plan(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Decide the article's path: recorded already, unchanged, a teaser whose page to fetch,
    no text, too short, or new."""
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
    if (p["teaser"] and ctx.fetch_full_text) or p["page_retry"]:
        return {**base, "route": "page"}
    route = _text_route(p["words"], ctx)
    return {**base, "route": route, **(_EMPTY if route == "empty" else {})}


def _text_route(words: int, ctx: RunContext) -> str:
    return "empty" if words == 0 else "short" if words < ctx.min_words else "process"


_EMPTY = {"status": "skipped", "error": "the feed entry has no text to summarize (title only)"}


def route_after_plan(state: ArticleState) -> str:
    """plan -> page for a teaser, copies for a text to process; store for nothing-to-do (or no
    text at all); END when recorded."""
    route = state.get("route")
    if route == "page":
        return "page"
    if route in ("process", "short"):
        return "copies"
    if route in ("unchanged", "empty"):
        return "store"
    if route == "recorded":
        return END
    raise ValueError(f"plan produced no route for article {state.get('article_id')}: {route!r}")


async def page(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Fetch the teaser's own page on the ingest queue; the article goes on with the longer of
    the page text and the feed text (a page problem is a reason, never a failure)."""
    ctx = _ctx(runtime)
    sig = fetch_page.s(state["article_id"], ctx.retry_failed)
    try:
        result = await get_dispatcher().call(sig, deadlines_from(ctx))
    except EXPECTED_FAILURES as exc:
        log.warning("article %s: page fetch gave nothing (%s); using the feed text",
                    state["article_id"], exc)  # fmt: skip
        words = await db_call(_feed_words, state["article_id"])
        result = {"text_source": "feed", "words": words}
    route = _text_route(int(result["words"]), ctx)
    out: dict = {"route": route, "text_source": result["text_source"]}
    return {**out, **_EMPTY} if route == "empty" else out


def _feed_words(article_id: int) -> int:
    with connection() as conn:
        return len(store.get_article(conn, article_id)["body"].split())


def route_after_page(state: ArticleState) -> str:
    """page -> copies with a text; store when neither page nor feed has any."""
    return "store" if state.get("route") == "empty" else "copies"


async def copies(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Is the text a copy of another stored article's (exact or lightly edited)? Decided on
    the analyze queue; the earliest published copy of a text is the one kept."""
    ctx = _ctx(runtime)
    sig = check_copy.s(state["article_id"], ctx.near_duplicate_days)
    try:
        result = await get_dispatcher().call(sig, deadlines_from(ctx))
    except EXPECTED_FAILURES as exc:  # recorded on the article, the run goes on
        log.warning("article %s: copy check failed: %s", state["article_id"], exc)
        return {"status": "failed", "error": f"copy check failed: {type(exc).__name__}: {exc}"}
    if result["copy_of"] is None:
        return {}
    status = "duplicate" if result["exact"] else "near_duplicate"
    return {"status": status, "duplicate_of": int(result["copy_of"])}


def route_after_copies(state: ArticleState) -> str:
    """A copy (or a failed check) is stored as it is; a distinct text is embedded."""
    if state.get("status") in ("duplicate", "near_duplicate", "failed"):
        return "store"
    if state.get("route") in ("process", "short"):
        return "embed"
    raise ValueError(f"impossible state after copies: {state!r}")


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
    return {}


def route_after_embed(state: ArticleState) -> str:
    """embed -> summarize, unless the article failed."""
    return "store" if state.get("status") == "failed" else "summarize"


async def summarize(state: ArticleState, runtime: Runtime[RunContext]) -> dict:
    """Summarize on the llm queue (or, extractive, on the embed queue where the model lives).

    A text shorter than `min_words` is its own summary: extractive, never sent to the LLM."""
    ctx = _ctx(runtime)
    use_llm = ctx.prefer_llm and get_settings().llm_enabled and state.get("route") == "process"
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
builder.add_node("page", page)
builder.add_node("copies", copies)
builder.add_node("embed", embed)
builder.add_node("summarize", summarize)
builder.add_node("classify", classify)
builder.add_node("store", store_node)
builder.add_edge(START, "plan")
builder.add_conditional_edges("plan", route_after_plan, ["page", "copies", "store", END])
builder.add_conditional_edges("page", route_after_page, ["copies", "store"])
builder.add_conditional_edges("copies", route_after_copies, ["embed", "store"])
builder.add_conditional_edges("embed", route_after_embed, ["summarize", "store"])
builder.add_conditional_edges("summarize", route_after_summarize, ["classify", "store"])
builder.add_edge("classify", "store")
builder.add_edge("store", END)

graph = builder.compile(name="article")
