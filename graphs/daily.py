"""The daily graph: collect feeds, fan out one article graph per article, build stories, publish.

    collect -> (Send) process_article x N -> trends -> publish

`collect` dispatches one `fetch_feed` task per listed URL (local paths are read here, where the
operator's files are), records each feed's outcome and the articles it read. Each article runs
the article graph in its own branch, all concurrently; a branch that fails for an expected
reason (a task failure, a deadline, an outage: `EXPECTED_FAILURES`) is recorded as a failed
article, never a failed run, while a bug in the orchestrator's own code (TypeError...) surfaces.
`trends` and `publish` run on the analyze and publish queues; `publish` writes the digest files
into the run's `out_dir`. Exported as `graph`, compiled without a checkpointer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import warnings
from dataclasses import fields
from datetime import date

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from core.redact import redact_text, redact_url
from core.settings import get_settings
from core.timeutil import parse_iso
from graphs.article import graph as article_graph
from graphs.digest_files import write_digest
from graphs.runtime import (
    EXPECTED_FAILURES,
    db_call,
    deadlines_from,
    ensure_workers,
    get_dispatcher,
)
from graphs.state import ArticleTask, DailyState, RunContext
from tasks.analyze import TrendParams, build_stories, label_story
from tasks.feedlist import FeedSource, read_feed_list
from tasks.ingest import fetch_feed, ingest_source
from tasks.publish import deliver_webhook, publish_digest
from tasks.store import record_outcome
from vectorstore import articles as store
from vectorstore import connection, runs
from vectorstore import feeds as feed_store

log = logging.getLogger(__name__)

# Without a checkpointer (Studio, tests) the article graph's durability has nothing to do.
warnings.filterwarnings("ignore", message="`durability` has no effect when no checkpointer")


def feeds_key(sources: list[FeedSource]) -> str:
    """What identifies a feed list for resuming and leasing: a digest of where its entries are,
    in order (a digest, because a listed URL may carry a `?token=` that the runs table must
    not hold)."""
    joined = "\n".join(s.location for s in sources)
    return "sha256:" + hashlib.sha256(joined.encode("utf-8")).hexdigest()


def _start_run(state: DailyState, sources: list[FeedSource]) -> list[int]:
    settings = get_settings()
    with connection() as conn:
        runs.create_run(
            conn,
            state["run_id"],
            as_of=parse_iso(state["as_of"]),
            window_hours=float(state.get("window_hours", 24)),
            feeds_key=feeds_key(sources),
            modes=settings.modes(),
        )
        return [feed_store.upsert_feed(conn, s.listed) for s in sources]


def _record_feed(run_id: str, position: int, source: FeedSource, feed_id: int, res: dict) -> None:
    with connection() as conn:
        runs.record_run_feed(
            conn,
            run_id,
            position,
            listed_url=source.listed,
            feed_id=feed_id,
            status=res["status"],
            error=res.get("error"),
            articles=len(res.get("article_ids", [])),
            dropped=res.get("dropped") or [],
        )
        runs.add_run_articles(conn, run_id, res.get("article_ids", []), source.listed)


async def _collect_one(
    run_id: str, position: int, source: FeedSource, feed_id: int, ctx: RunContext
) -> dict:
    try:
        if source.is_path:
            res = await asyncio.to_thread(ingest_source, feed_id, source)
        else:
            sig = fetch_feed.s(feed_id, source.listed, source.location, False)
            res = await get_dispatcher().call(sig, deadlines_from(ctx))
    except EXPECTED_FAILURES as exc:  # one bad feed never stops the run
        log.warning("feed %s failed: %s", redact_url(source.listed), redact_text(str(exc)))
        res = {
            "status": "failed",
            "error": redact_text(f"{type(exc).__name__}: {exc}"),
            "article_ids": [],
        }
    await db_call(_record_feed, run_id, position, source, feed_id, res)
    return {  # the run's state is checkpointed: what it holds is shown, so it is redacted
        "url": redact_url(source.listed),
        "status": res["status"],
        "error": redact_text(res["error"]) if res.get("error") else None,
        "articles": len(res.get("article_ids", [])),
        "article_ids": res.get("article_ids", []),
    }


def _add_waiting(run_id: str, feed_ids: list[int], retry_failed: bool) -> list[int]:
    states = ["pending", "failed"] if retry_failed else ["pending"]
    with connection() as conn:
        return runs.add_waiting_articles(conn, run_id, feed_ids, states)


def _limit(run_id: str, ids: list[int], max_articles: int | None) -> list[int]:
    """Keep the newest `max_articles`, oldest first; the rest stay in the run as `skipped`
    with the reason (they were read, so the digest lists them; a later run processes them).

    Oldest first, because the earliest published copy of a text is the one kept: deciding
    copies in time order means fewer re-pointed copies.
    """
    with connection() as conn:
        rows = store.get_articles(conn, ids)
        rows.sort(key=lambda a: ((a["published"] or a["first_seen"]), a["id"]))
        if max_articles and len(rows) > max_articles:
            cut, rows = rows[:-max_articles], rows[-max_articles:]
            reason = (
                f"not processed in this run: --max-articles {max_articles} kept the newest "
                f"{max_articles} of {len(cut) + max_articles} articles read"
            )
            for a in cut:
                runs.set_run_article_status(conn, run_id, a["id"], "skipped", reason)
    return [a["id"] for a in rows]


async def collect(state: DailyState, runtime: Runtime[RunContext]) -> dict:
    """Read every listed feed (concurrently) and note the articles this run read."""
    ctx = runtime.context or RunContext()
    await asyncio.to_thread(ensure_workers)
    sources = await asyncio.to_thread(read_feed_list, state["feeds_file"])
    feed_ids = await db_call(_start_run, state, sources)
    feeds = await asyncio.gather(
        *(
            _collect_one(state["run_id"], pos, src, fid, ctx)
            for pos, (src, fid) in enumerate(zip(sources, feed_ids))
        )
    )
    ids: list[int] = []
    seen: set[int] = set()
    for f in feeds:
        for aid in f.pop("article_ids"):
            if aid not in seen:
                seen.add(aid)
                ids.append(aid)
    waiting = await db_call(
        _add_waiting, state["run_id"], feed_ids, ctx.retry_failed
    )  # Beat's pending articles, and failed ones on --retry-failed
    ids += [aid for aid in waiting if aid not in seen]
    ids = await db_call(_limit, state["run_id"], ids, state.get("max_articles"))
    return {"feeds": list(feeds), "article_ids": ids}


def route_articles(state: DailyState) -> list[Send] | str:
    """One article branch per article read; straight to trends when there are none."""
    ids = state.get("article_ids")
    if ids is None:
        raise ValueError("collect produced no article list")
    if not ids:
        return "trends"
    return [Send("process_article", {"article_id": i, "run_id": state["run_id"]}) for i in ids]


async def process_article(task: ArticleTask, runtime: Runtime[RunContext]) -> dict:
    """Run the article graph for one article; an expected failure is recorded as a failed
    article, a programming error propagates."""
    try:
        result = await article_graph.ainvoke(
            {"article_id": task["article_id"], "run_id": task["run_id"]},
            context=runtime.context or RunContext(),
            # One checkpoint per article, not per step: every node is idempotent, so a resumed
            # article restarts at plan, which finds what is already stored (per-step checkpoint
            # writes were about 30% of the orchestrator's time).
            durability="exit",
        )
        status = result.get("status", "failed")
    except EXPECTED_FAILURES as exc:  # recorded on the article; the run goes on
        log.exception("article %s crashed", task["article_id"])
        status = "failed"
        await db_call(
            record_outcome, task["run_id"], task["article_id"], "failed",
            error=f"{type(exc).__name__}: {exc}",
        )  # fmt: skip
    return {"outcomes": [{"article_id": task["article_id"], "status": status}]}


async def trends(state: DailyState, runtime: Runtime[RunContext]) -> dict:
    """Group the window's articles into scored stories (queue analyze), then label the
    trending ones with the LLM when one is configured (queue llm, all at once)."""
    ctx = runtime.context or RunContext()
    params = {f.name: getattr(ctx, f.name) for f in fields(TrendParams)}
    window = float(state.get("window_hours", 24))
    sig = build_stories.s(state["run_id"], state["as_of"], window, params)
    result = await get_dispatcher().call(sig, deadlines_from(ctx))
    hot = result.get("trending_ids", [])
    if hot and ctx.label_with_llm and get_settings().llm_enabled:
        labels = await asyncio.gather(
            *(
                get_dispatcher().call(
                    label_story.s(state["run_id"], sid).set(queue="llm"), deadlines_from(ctx)
                )
                for sid in hot
            ),
            return_exceptions=True,
        )
        for sid, res in zip(hot, labels):
            if isinstance(res, EXPECTED_FAILURES):  # the offline label stays
                log.warning("story %s: no LLM label: %s", sid, res)
            elif isinstance(res, BaseException):  # a bug here: surface it
                raise res
    return {"stories": result["stories"], "trending": result["trending"]}


DIGEST_FILES = (
    ("digest.json", "digest"),
    ("digest.md", "markdown"),
    ("digest.html", "html"),
    ("digest.xml", "atom"),
)


async def publish(state: DailyState, runtime: Runtime[RunContext]) -> dict:
    """Build the digest on the publish queue, write its files here, then post the webhook.

    The files come first: a webhook that fails or hangs is retried within its own deadline,
    recorded on the day's digest and logged, and never fails the run.
    """
    ctx = runtime.context or RunContext()
    result = await get_dispatcher().call(publish_digest.s(state["run_id"]), deadlines_from(ctx))
    texts = {
        name: json.dumps(result[key], indent=2, ensure_ascii=False)
        if key == "digest"
        else result[key]
        for name, key in DIGEST_FILES
    }
    out = await asyncio.to_thread(write_digest, ctx.out_dir, texts)
    url = get_settings().digest_webhook_url
    if url:
        await deliver_webhook(url, date.fromisoformat(result["day"]), result["slack"])
    return {"digest_dir": str(out)}


builder = StateGraph(DailyState, context_schema=RunContext)
builder.add_node("collect", collect)
builder.add_node("process_article", process_article, input_schema=ArticleTask)
builder.add_node("trends", trends)
builder.add_node("publish", publish)
builder.add_edge(START, "collect")
builder.add_conditional_edges("collect", route_articles, ["process_article", "trends"])
builder.add_edge("process_article", "trends")
builder.add_edge("trends", "publish")
builder.add_edge("publish", END)

graph = builder.compile(name="daily")
