"""Pipeline benchmark: the queue architecture against the sequential script it replaces.

Generates N articles (default 500) as RSS files, 50 per feed, dated within the 24 h before
--as-of. Starts a private Redis, an embedded PostgreSQL + pgvector, the loopback LLM server
(latency L = 1.0 s, at most C = 32 chat requests at once: more get 429) and a worker fleet:
  llm      threads pool, C threads          (summaries: one chat call each)
  embed    prefork, 1 child                 (MiniLM batches; the model is loaded once)
  ops      threads pool, 8 threads          (ingest, analyze, publish; store_outcome, no-ops)
then measures, in one run:
  (a) sequential: for each article, the real LLM call (`tasks.summarize.llm_summary`, i.e.
      langchain-openai's ChatOpenAI against the loopback server), one MiniLM embed, and the
      stores (article, summary, embedding, outcome) through `vectorstore`; timed on the first
      50 articles after one untimed warm-up call, scaled to N, plus the one-off feed parsing;
  (b) `python -m graphs.run_daily --feeds ... --as-of ... --out ...` against the warm fleet
      (wall time of the command, so its start-up is included), with OPENAI_API_KEY and
      OPENAI_BASE_URL set so summaries go to the LLM server, and LLM_MAX_CONCURRENCY=C; each
      run starts from an empty database, --repeats runs (default 2), the best counts;
and the three stage limits: llm = N * L / C; embed = the raw batched embedder on the same texts
(in this process, workers idle; model loaded and warmed, best of --repeats passes); celery = a
raw group of N `tasks.health.noop` tasks on the same broker and fleet (best of 3).
bound = the largest; efficiency = bound / pipeline.
Checks (a failure exits 1): every article is "new" with summary_source "llm", and the LLM server
received exactly N summary requests (requests with the summarize system prompt; the story-label
calls of the trends stage are counted apart). The table also shows when the summary requests
arrived and the CPU seconds every process group used during the best run of (b): stages that
share 2 cores cannot all run at their own bound at once. --time-ordered writes the feeds oldest
article first (a diagnostic of dispatch order); --embed-threads sets the embed worker's
OMP_NUM_THREADS.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (
    PY,
    ROOT,
    Services,
    Worker,
    make_articles,
    parser,
    run_benchmark,
    table,
    truncate_all,
    write_feeds,
)

SEQUENTIAL_SAMPLE = 50


def parse_feeds(feed_list: Path) -> tuple[list[tuple[str, object]], float]:
    """(listed feed, parsed entry) pairs in feed order, and the seconds parsing took."""
    from tasks.feedlist import read_feed_list
    from tasks.feedparse import parse_feed
    from tasks.fetcher import read_local_feed

    t0 = time.perf_counter()
    out = []
    for src in read_feed_list(feed_list):
        parsed = parse_feed(read_local_feed(src.location), src.location)
        out += [(src.listed, e) for e in parsed.entries]
    return out, time.perf_counter() - t0


def sequential(entries: list[tuple[str, object]], summary_words: int = 60) -> float:
    """Seconds for the script the pipeline replaces, over `entries` (one article at a time)."""
    from tasks.embed import embedding_text
    from tasks.providers import get_embedder
    from tasks.summarize import llm_summary
    from vectorstore import articles as store
    from vectorstore import connection
    from vectorstore import feeds as feed_store

    embedder = get_embedder()
    t0 = time.perf_counter()
    for listed, e in entries:
        with connection() as conn:
            feed_id = feed_store.upsert_feed(conn, listed)
            (aid,) = store.upsert_articles(
                conn,
                feed_id,
                [
                    store.NewArticle(
                        guid=e.guid, url=e.url, canonical_url=e.canonical_url, title=e.title,
                        body=e.text, content_hash=e.content_hash, published=e.published,
                        date_source=e.date_source, author=e.author, language=e.language,
                    )
                ],
            )  # fmt: skip
        result, note = llm_summary(e.title, e.text, summary_words)
        if result is None:
            raise RuntimeError(f"sequential LLM summary failed: {note}")
        vector = embedder.embed_batch([embedding_text(e.title, e.text)])[0]
        with connection() as conn:
            store.store_summary(
                conn, aid, content_hash=e.content_hash, summary=result.summary, source="llm",
                key_points=result.key_points, tags=result.tags, category=result.category,
                model="bench-model", note=note or None,
            )  # fmt: skip
            store.store_embeddings(conn, [(aid, e.content_hash, vector)], embedder.name)
            store.set_article_outcome(conn, aid, state="processed", content_hash=e.content_hash)
    return time.perf_counter() - t0


def warm_fleet(as_of: datetime) -> None:
    """One real task per queue: the embed child loads MiniLM, every worker opens its pool."""
    from bench._harness import insert_articles
    from tasks.embed import embed_batch
    from tasks.health import noop
    from tasks.store import store_outcome
    from tasks.summarize import summarize_article

    items = make_articles(64, as_of=as_of - timedelta(days=30), seed=999)
    ids = insert_articles(items, feed_url="bench://warm-up")
    for i in range(0, len(ids), 32):  # varied lengths, as the raw embedder's warm-up
        embed_batch.delay(ids[i : i + 32]).get(timeout=300)
    aid = ids[0]
    summarize_article.delay(aid, "llm", 60).get(timeout=120)
    store_outcome.delay("warm-up", aid, "new").get(timeout=60)
    for queue in ("ingest", "analyze", "publish", "llm", "embed"):
        noop.apply_async((1,), queue=queue).get(timeout=60)


def celery_group(n: int) -> float:
    """Best seconds of 3 raw groups of `n` no-op tasks (default queue: analyze)."""
    from celery import group

    from tasks.health import noop

    group(noop.s(i) for i in range(50)).apply_async().get(timeout=60, interval=0.005)  # warm
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        res = group(noop.s(i) for i in range(n)).apply_async()
        values = res.get(timeout=300, interval=0.005)
        best = min(best, time.perf_counter() - t0)
        assert values == list(range(n))
    return best


def embed_raw(entries: list[tuple[str, object]], rounds: int) -> tuple[float, float]:
    """Best seconds of `rounds` passes of the raw batched embedder over the pipeline's texts,
    and the CPU seconds that pass used."""
    from tasks.embed import embedding_text
    from tasks.providers import get_embedder

    embedder = get_embedder()
    texts = [embedding_text(e.title, e.text) for _, e in entries]
    embedder.embed_batch(texts[-64:])  # warm: model loaded, varied lengths seen
    best, best_cpu = float("inf"), 0.0
    for _ in range(rounds):
        c0 = time.process_time()
        t0 = time.perf_counter()
        vectors = embedder.embed_batch(texts)
        dt = time.perf_counter() - t0
        if dt < best:
            best, best_cpu = dt, time.process_time() - c0
        assert vectors.shape[0] == len(texts)
    return best, best_cpu


def run_pipeline(
    s: Services, env: dict, feeds: Path, as_of: datetime, n: int, latency: float
) -> dict:
    """One `python -m graphs.run_daily` from an empty database: wall time, checks, LLM trace,
    and the CPU seconds each process group used meanwhile."""
    import json
    import resource

    truncate_all()
    s.llm.reset()
    out = s.tmp / "out"
    cmd = [PY, "-m", "graphs.run_daily", "--feeds", str(feeds), "--out", str(out),
           "--as-of", as_of.isoformat(), "-q"]  # fmt: skip
    cpu0 = s.cpu_groups()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0m = time.monotonic()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = s.cpu_groups()
    if proc.returncode != 0:
        raise RuntimeError(f"run_daily exited {proc.returncode}: {proc.stderr[-3000:]}")
    cpu = {k.removeprefix("worker "): cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
    cpu["run_daily (orchestrator)"] = (kids1.ru_utime + kids1.ru_stime) - (
        kids0.ru_utime + kids0.ru_stime
    )
    arts = json.loads((out / "digest.json").read_text())["articles"]
    statuses: dict[str, int] = {}
    for a in arts:
        statuses[a["status"]] = statuses.get(a["status"], 0) + 1
    new = [a for a in arts if a["status"] == "new"]
    marker = (ROOT / "prompts" / "summarize_system.txt").read_text().split("\n")[0][:60]
    chats = [r for r in s.llm.requests if r.path.endswith("/chat/completions")]
    summaries = [r for r in chats if _system_text(r.body).startswith(marker)]
    m = re.search(r"^Time: .*total ([\d.]+)s", proc.stdout, re.MULTILINE)
    print(f"run_daily: {wall:.1f}s, {statuses}", file=sys.stderr)
    return {
        "wall": wall,
        "graph_total": float(m.group(1)) if m else None,
        "statuses": statuses,
        "peak": s.llm.peak_concurrency,
        "rejected": s.llm.rejected,
        "summaries": len(summaries),
        "other_chats": len(chats) - len(summaries),
        "first_chat": min((r.received_at for r in summaries), default=t0m) - t0m,
        "last_chat": max((r.received_at for r in summaries), default=t0m) - t0m,
        "cpu": cpu,
        "checks": {
            f"articles in digest == {n}": len(arts) == n,
            f"all {n} new": len(new) == n,
            "summary_source llm for every new article": bool(new)
            and all(a["summary_source"] == "llm" for a in new),
            f"LLM server got {n} summary requests": len(summaries) == n,
        },
    }


def _system_text(body: dict) -> str:
    for m in body.get("messages") or []:
        if m.get("role") == "system":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c)
    return ""


def body(s: Services, args) -> tuple[str, dict]:  # noqa: ANN001
    n, latency, conc = args.n, args.latency, args.max_concurrency
    as_of = (
        datetime.fromisoformat(args.as_of.replace("Z", "+00:00"))
        if args.as_of
        else datetime.now(UTC).replace(microsecond=0)
    )
    s.start_redis()
    s.start_postgres()
    s.start_llm(latency=latency, max_concurrency=conc)
    env = s.export(LLM_MAX_CONCURRENCY=str(conc), LLM_MAX_RETRIES="2")
    items = make_articles(n, as_of=as_of)
    if args.time_ordered:  # diagnostic: list order == publication order (oldest first)
        items.sort(key=lambda it: it["published"])
    feeds = write_feeds(s.tmp / "feeds", items, per_feed=50)
    embed_env = {"OMP_NUM_THREADS": str(args.embed_threads)} if args.embed_threads else None
    t_start = time.monotonic()
    s.start_workers(
        [
            Worker("llm", "llm", "threads", args.llm_threads or conc),
            Worker("embed", "embed", "prefork", 1, env=embed_env),
            Worker("ops", "ingest,analyze,publish", "threads", 8),
        ]
    )
    from vectorstore import get_db

    get_db()
    entries, parse_s = parse_feeds(feeds)
    assert len(entries) == n, f"generated {n} articles, parsed {len(entries)}"
    print(f"fleet up in {time.monotonic() - t_start:.1f}s; parsed {n} articles", file=sys.stderr)

    embed_bound, embed_cpu = embed_raw(entries, args.repeats)
    warm_fleet(as_of)
    celery_bound = celery_group(n)
    truncate_all()

    # (a) sequential, after one untimed warm-up article
    sample = entries[: min(SEQUENTIAL_SAMPLE, n)]
    sequential(entries[-1:])
    truncate_all()
    seq_sample = sequential(sample)
    sequential_s = parse_s + seq_sample * n / len(sample)
    print(f"sequential: {seq_sample:.1f}s for {len(sample)}", file=sys.stderr)

    # (b) the pipeline, `repeats` times from an empty database; the best run counts
    runs = [run_pipeline(s, env, feeds, as_of, n, latency) for _ in range(args.repeats)]
    best = min(runs, key=lambda r: r["wall"])
    pipeline_s = best["wall"]
    llm_bound = n * latency / conc
    bound = max(llm_bound, embed_bound, celery_bound)
    checks = {}
    for r in runs:
        for k, v in r["checks"].items():
            checks[k] = checks.get(k, True) and v
    rows = [
        ("sequential (a), scaled", sequential_s,
         f"{seq_sample:.1f}s for {len(sample)} + parse {parse_s:.2f}s, x{n / len(sample):.0f}"),
        ("pipeline (b), run_daily wall", pipeline_s,
         "best of " + ", ".join(f"{r['wall']:.1f}s" for r in runs)),
        ("  graph total (its report)", best["graph_total"],
         "the rest is interpreter start-up, imports, DB open, lease"),
        ("  LLM requests span", best["last_chat"] + latency - best["first_chat"],
         f"first at +{best['first_chat']:.1f}s, last answered at "
         f"+{best['last_chat'] + latency:.1f}s"),
        ("llm bound N*L/C", llm_bound, f"{n} x {latency}s / {conc}"),
        ("embed bound (raw batched)", embed_bound, f"{n / embed_bound:.0f} texts/s"),
        ("celery bound (group of no-ops)", celery_bound, f"{n / celery_bound:.0f} tasks/s"),
        ("bound (max)", bound, ""),
    ]  # fmt: skip
    cores = len(os.sched_getaffinity(0))
    cpu_rows = sorted(best["cpu"].items(), key=lambda kv: -kv[1])
    cpu_total = sum(v for _, v in cpu_rows)
    cpu_rows.append(("total", cpu_total))
    cpu_rows.append((f"raw embedder, same {n} texts (for comparison)", embed_cpu))
    report = "\n".join(
        [
            f"Pipeline benchmark: N={n}, L={latency}s, C={conc}, llm worker threads="
            f"{args.llm_threads or conc}, embed worker prefork -c 1"
            + (f" OMP_NUM_THREADS={args.embed_threads}" if args.embed_threads else ""),
            table(rows, ("measure", "seconds", "note")),
            "",
            f"CPU seconds used during the best run of (b) ({pipeline_s:.1f}s wall x {cores} cores"
            f" = {pipeline_s * cores:.0f} CPU-s available; busy {cpu_total / pipeline_s:.2f} "
            "cores):",
            table([(k, v) for k, v in cpu_rows], ("process group", "CPU-s")),
            f"CPU-sum bound (all CPU work on {cores} cores, perfect overlap): "
            f"{cpu_total / cores:.1f}s",
            "",
            f"speedup {sequential_s / pipeline_s:.1f}x; efficiency {bound / pipeline_s:.2f} "
            "(target >= 0.8)",
            f"digest statuses {best['statuses']}; LLM: {best['summaries']} summary requests, "
            f"{best['other_chats']} other (story labels), peak concurrency {best['peak']}, "
            f"429s {best['rejected']}",
            "checks: " + "; ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in checks.items()),
        ]
    )
    result = {
        "bench": "pipeline",
        "n": n,
        "sequential_s": round(sequential_s, 2),
        "pipeline_s": round(pipeline_s, 2),
        "speedup": round(sequential_s / pipeline_s, 2),
        "llm_bound_s": round(llm_bound, 2),
        "embed_bound_s": round(embed_bound, 2),
        "celery_bound_s": round(celery_bound, 2),
        "bound_s": round(bound, 2),
        "efficiency": round(bound / pipeline_s, 3),
    }
    if not all(checks.values()):
        result["_failed"] = True
    return report, result


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=500, help="articles (default 500)")
    p.add_argument("--latency", type=float, default=1.0, help="LLM seconds per call (1.0)")
    p.add_argument("--max-concurrency", type=int, default=32, help="LLM server limit C (32)")
    p.add_argument("--llm-threads", type=int, default=None, help="llm worker threads (C)")
    p.add_argument("--as-of", default=None, help="end of the window, ISO 8601 (default now)")
    p.add_argument("--repeats", type=int, default=2, help="runs of (b) and raw embed passes (2)")
    p.add_argument(
        "--time-ordered",
        action="store_true",
        help="diagnostic: write the feeds oldest article first, feed by feed",
    )
    p.add_argument(
        "--embed-threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS of the embed worker (default: torch's, one per core)",
    )
    args = p.parse_args()
    return run_benchmark("pipeline", lambda s: body(s, args), keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
