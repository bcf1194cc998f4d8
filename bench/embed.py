"""Embed benchmark: articles per second through the pipeline's embed stage vs the raw model.

Pipeline side: N stored articles (generated, 60-200 words, default 256) are submitted at once,
one `submit` per article as the article graph's embed node does, to the Dispatcher's
EmbedBatcher (EMBED_BATCH_SIZE, default 32) in this process; it dispatches `embed_batch` tasks
to a real worker on the embed queue (prefork, 1 child, as the fleet runs it: the child loads
MiniLM once), which re-reads the articles, embeds them, and stores the vectors in PostgreSQL
(HNSW index maintained). The clock runs from the first submit to the last article's result.
Raw side: the same texts (`tasks.embed.embedding_text`) through `get_embedder().embed_batch`
in this process, batch size as configured: no queue, no database.
Both sides are warmed first (model loaded, 64 texts of varied length embedded), then rounds
alternate raw and pipeline (vectors deleted between pipeline rounds); the best round of each
makes the ratio, so a burst of load from elsewhere on a shared machine does not decide it. A
diagnostic row embeds the same texts raw but in calls of EMBED_BATCH_SIZE in the tasks' order.
ratio = pipeline throughput / raw throughput (target >= 0.7).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (
    Services,
    Worker,
    article_text,
    insert_articles,
    make_articles,
    parser,
    run_benchmark,
    table,
)


def raw_round(texts: list[str], chunk: int | None = None) -> float:
    """Seconds to embed `texts` in one call, or in calls of `chunk` texts as the tasks do."""
    from tasks.providers import get_embedder

    embedder = get_embedder()
    step = chunk or len(texts)
    t0 = time.perf_counter()
    rows = sum(
        embedder.embed_batch(texts[i : i + step]).shape[0] for i in range(0, len(texts), step)
    )
    dt = time.perf_counter() - t0
    assert rows == len(texts)
    return dt


async def _pipeline(ids: list[int]) -> float:
    from core.settings import get_settings
    from graphs.runtime import Deadlines, get_dispatcher
    from tasks.embed import embed_batch

    disp = get_dispatcher()
    batcher = disp.batcher(
        "bench-embed", lambda batch: embed_batch.s(batch), get_settings().embed_batch_size,
        Deadlines(),
    )  # fmt: skip
    t0 = time.perf_counter()
    await asyncio.gather(*(batcher.submit(i) for i in ids))
    return time.perf_counter() - t0


def pipeline_round(ids: list[int]) -> float:
    from vectorstore import connection

    with connection() as conn:
        conn.execute("DELETE FROM embeddings")
    dt = asyncio.run(_pipeline(ids))
    with connection() as conn:
        stored = conn.execute(
            "SELECT count(*) FROM embeddings WHERE article_id = ANY(%s)", (ids,)
        ).fetchone()[0]
    if stored != len(ids):
        raise RuntimeError(f"pipeline stored {stored} vectors for {len(ids)} articles")
    return dt


def body(s: Services, args) -> tuple[str, dict]:  # noqa: ANN001
    from datetime import UTC, datetime

    s.start_redis()
    s.start_postgres()
    s.export()
    s.start_workers([Worker("embed", "embed", "prefork", 1)])
    from core.settings import get_settings
    from tasks.embed import embed_batch, embedding_text
    from tasks.providers import get_embedder
    from vectorstore import get_db

    get_db()
    now = datetime.now(UTC)
    items = make_articles(args.n, as_of=now, seed=21)
    ids = insert_articles(items)
    texts = [embedding_text(it["title"], article_text(it)) for it in items]
    warm = make_articles(64, as_of=now, seed=22)
    warm_ids = insert_articles(warm, feed_url="bench://warm")
    warm_texts = [embedding_text(it["title"], article_text(it)) for it in warm]
    get_embedder().embed_batch(warm_texts)
    embed_batch.delay(warm_ids).get(timeout=300)

    batch = get_settings().embed_batch_size
    raw: list[float] = []
    chunked: list[float] = []
    pipe: list[float] = []
    for r in range(args.rounds):
        raw.append(raw_round(texts))
        pipe.append(pipeline_round(ids))
        chunked.append(raw_round(texts, batch))
        print(f"round {r + 1}: raw {raw[-1]:.1f}s, pipeline {pipe[-1]:.1f}s, raw in task-sized "
              f"calls {chunked[-1]:.1f}s", file=sys.stderr)  # fmt: skip
    n = len(ids)
    raw_tput, pipe_tput = n / min(raw), n / min(pipe)
    ratio = pipe_tput / raw_tput
    rows = [
        ("raw batched model (this process), all texts in one call", min(raw), raw_tput, 1.0,
         " ".join(f"{x:.1f}" for x in raw)),
        (f"pipeline: EmbedBatcher -> {-(-n // batch)} embed_batch tasks -> worker", min(pipe),
         pipe_tput, ratio, " ".join(f"{x:.1f}" for x in pipe)),
        (f"  diagnostic: raw model, one call per {batch} texts in the tasks' order",
         min(chunked), n / min(chunked), min(raw) / min(chunked),
         " ".join(f"{x:.1f}" for x in chunked)),
    ]  # fmt: skip
    report = "\n".join(
        [
            f"Embed benchmark: {n} articles, batch {batch}, embed worker prefork -c 1, "
            f"best of {args.rounds} rounds",
            table(rows, ("side", "seconds", "articles/s", "x raw", "rounds (s)")),
            "",
            f"ratio {ratio:.2f} (target >= 0.7). The model sorts the texts of one call by length "
            f"before cutting its own batches of {batch}; a task only sees its own {batch} texts, "
            "so it pads more (the diagnostic row isolates that from queue and database costs).",
        ]
    )
    return report, {"bench": "embed", "ratio": round(ratio, 3)}


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=256, help="articles (256)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    args = p.parse_args()
    return run_benchmark("embed", lambda s: body(s, args), keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
