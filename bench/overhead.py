"""Overhead benchmark: what the article graph costs per article on top of plain Celery.

What "no-op" means here. The quantity wanted is orchestration cost: LangGraph's nodes and
routing, the PostgreSQL checkpointer writing every step, the Dispatcher's publish and shared
result waiter, and what the graph itself does in the orchestrator (plan reads the article, the
near-duplicate step queries the store). So the graph is the production one
(`graphs.article.builder` compiled with an AsyncPostgresSaver on the same pgserver: pool with
autocommit=True, prepare_threshold=0, row_factory=dict_row) and every Celery task it dispatches
is a no-op: a worker started from `bench._noop_worker` registers stand-ins under the real task
names that return the smallest result the node reads and touch no database or model. The
articles are real rows (generated, 60-200 words), so each takes the full path
plan -> embed -> near_duplicate -> summarize -> classify -> store; the near-duplicate step finds
no stored vector (the embed stand-in stores none) and returns after one read.

The baseline is what the graph replaces at the queue level: per article, a raw Celery chain of
the same no-op tasks on the same queues, broker and worker. Both sides run K articles at once
(default 100 in flight). With EMBED_BATCH_SIZE=1 each article dispatches exactly the tasks the
chain runs (embed, summarize, store: 3), counted from the result keys in Redis, so the ratio
compares equal work. The graph runs as run_daily runs it: checkpointed with durability="exit"
(one checkpoint per article; its nodes are idempotent). The table also shows it without a
checkpointer, with LangGraph's default per-step checkpoints (durability="async"), and at the
production batch size (32, fewer tasks). Rounds alternate graph and chain; the medians
make the ratio.
ratio = graph time / chain time (target <= 1.5).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (
    Services,
    Worker,
    insert_articles,
    make_articles,
    parser,
    run_benchmark,
    table,
)

QUEUES = ("embed", "llm", "analyze")


def _result_keys(redis_url: str) -> int:
    import redis

    r = redis.Redis.from_url(redis_url)
    return sum(1 for _ in r.scan_iter("celery-task-meta-*", count=1000))


async def _graph_round(
    ids: list[int], uri: str, checkpointer: bool, durability: str | None
) -> float:
    """Seconds for the article graph to finish every article, all in flight at once."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    from graphs.article import builder
    from graphs.state import RunContext

    pool = AsyncConnectionPool(
        uri, min_size=4, max_size=20, open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )  # fmt: skip
    await pool.open()
    try:
        saver = AsyncPostgresSaver(pool) if checkpointer else None
        if saver is not None:
            await saver.setup()
        graph = builder.compile(checkpointer=saver)
        run_id = f"bench-{uuid.uuid4().hex[:8]}"
        ctx = RunContext()

        async def one(aid: int) -> dict:
            cfg = {"configurable": {"thread_id": f"{run_id}-{aid}"}}
            extra = {"durability": durability} if durability else {}
            return await graph.ainvoke(
                {"article_id": aid, "run_id": run_id}, cfg, context=ctx, **extra
            )

        await one(ids[0])  # warm: imports, pool connections, the dispatcher's threads
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(a) for a in ids[1:]))
        dt = time.perf_counter() - t0
    finally:
        await pool.close()
    bad = [r for r in results if r.get("status") != "new"]
    if bad:
        raise RuntimeError(f"{len(bad)} articles did not take the full path: {bad[0]}")
    return dt


def graph_round(
    ids: list[int], uri: str, checkpointer: bool, batch: int, durability: str | None = None
) -> float:
    import os

    from core.settings import get_settings

    os.environ["EMBED_BATCH_SIZE"] = str(batch)
    get_settings.cache_clear()
    return asyncio.run(_graph_round(ids, uri, checkpointer, durability))


def chain_round(k: int, tasks_per_article: int) -> float:
    """Seconds for `k` raw chains of no-op tasks (one per queue), all in flight at once."""
    from celery import chain

    from tasks.app import app
    from tasks.health import noop

    queues = [QUEUES[i % len(QUEUES)] for i in range(tasks_per_article)]
    backend = app.backend

    def run(n: int) -> float:
        t0 = time.perf_counter()
        last = [
            chain(*(noop.si(i).set(queue=q) for q in queues)).apply_async().id for i in range(n)
        ]
        keys = {backend.get_key_for_task(t) for t in last}
        while keys:
            ks = list(keys)
            for key, value in zip(ks, backend.mget(ks)):
                if value is not None and backend.decode_result(value)["status"] == "SUCCESS":
                    keys.discard(key)
            if keys:
                time.sleep(0.002)
        return time.perf_counter() - t0

    run(1)  # warm
    return run(k)


def body(s: Services, args) -> tuple[str, dict]:  # noqa: ANN001
    from datetime import UTC, datetime

    redis_url = s.start_redis()
    uri = s.start_postgres()
    # An API key makes the graph send summaries to the llm queue, as in production; no LLM
    # is called (the summarize stand-in answers).
    s.export(OPENAI_API_KEY="sk-bench-unused", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    s.start_workers([Worker("noop", ",".join(QUEUES), args.pool, args.concurrency,
                            app="bench._noop_worker")])  # fmt: skip
    from vectorstore import get_db

    get_db()
    k = args.k
    ids = insert_articles(make_articles(k + 1, as_of=datetime.now(UTC), seed=11))

    # tasks per article, counted from the result keys each variant leaves in Redis
    before = _result_keys(redis_url)
    graph_round(ids[:11], uri, True, 1)
    per_article = (_result_keys(redis_url) - before) / 11
    tasks = round(per_article)
    print(f"graph dispatches {per_article:.2f} tasks per article", file=sys.stderr)

    times: dict[str, list[float]] = {
        "graph": [], "chain": [], "nocp": [], "batch32": [], "async": []
    }  # fmt: skip
    for r in range(args.rounds):
        # production: run_daily invokes each article graph with durability="exit"
        times["graph"].append(graph_round(ids, uri, True, 1, "exit"))
        times["chain"].append(chain_round(k, tasks))
        if r < 2:
            times["nocp"].append(graph_round(ids, uri, False, 1))
            times["batch32"].append(graph_round(ids, uri, True, 32, "exit"))
            times["async"].append(graph_round(ids, uri, True, 1))
        print(f"round {r + 1}: graph {times['graph'][-1]:.2f}s, chain {times['chain'][-1]:.2f}s",
              file=sys.stderr)  # fmt: skip
    before = _result_keys(redis_url)
    graph_round(ids[:33], uri, True, 32)
    per_article_32 = (_result_keys(redis_url) - before) / 33

    med = {name: statistics.median(v) for name, v in times.items()}
    ratio = med["graph"] / med["chain"]
    rows = [
        ("raw Celery chain of no-ops", tasks, med["chain"], 1000 * med["chain"] / k, 1.0,
         " ".join(f"{x:.2f}" for x in times["chain"])),
        ("article graph + PG checkpointer (exit)", per_article, med["graph"],
         1000 * med["graph"] / k, ratio, " ".join(f"{x:.2f}" for x in times["graph"])),
        ("  same, no checkpointer", per_article, med["nocp"], 1000 * med["nocp"] / k,
         med["nocp"] / med["chain"], " ".join(f"{x:.2f}" for x in times["nocp"])),
        ("  same, per-step checkpoints ('async')", per_article, med["async"],
         1000 * med["async"] / k, med["async"] / med["chain"],
         " ".join(f"{x:.2f}" for x in times["async"])),
        ("  same + checkpointer, EMBED_BATCH_SIZE=32", round(per_article_32, 2), med["batch32"],
         1000 * med["batch32"] / k, med["batch32"] / med["chain"],
         " ".join(f"{x:.2f}" for x in times["batch32"])),
    ]  # fmt: skip
    report = "\n".join(
        [
            f"Overhead benchmark: {k} articles in flight, worker pool {args.pool} "
            f"-c {args.concurrency}, median of {args.rounds} rounds",
            table(
                rows, ("variant", "tasks/article", "seconds", "ms/article", "x chain", "rounds")
            ),  # fmt: skip
            "",
            f"ratio {ratio:.2f} (target <= 1.5); graph costs "
            f"{1000 * (med['graph'] - med['chain']) / k:.1f} ms per article more than the chain "
            f"at {k} in flight",
        ]
    )
    return report, {"bench": "overhead", "ratio": round(ratio, 3)}


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--k", type=int, default=100, help="articles in flight (100)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    p.add_argument("--pool", default="threads", help="no-op worker pool (threads)")
    p.add_argument("--concurrency", type=int, default=4, help="no-op worker concurrency (4)")
    args = p.parse_args()
    return run_benchmark("overhead", lambda s: body(s, args), keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
