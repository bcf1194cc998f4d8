"""Embeddings: one task embeds a batch of articles and upserts their vectors.

The orchestrator groups articles into batches of `EMBED_BATCH_SIZE`; the task re-reads them,
skips every article whose vector for this model and content is already stored (no re-embedding
of unchanged content), and embeds the rest in one model call. Queue `embed`: CPU-bound, so its
workers are few and prefork. The model loads lazily in the process that runs the task.
"""

from __future__ import annotations

from core.errors import TransientError
from vectorstore import DatabaseUnavailable, connection
from vectorstore import articles as store

from .app import app
from .providers import get_embedder

MAX_CHARS = 4000  # MiniLM reads 256 tokens; more text only costs tokenizer time


def embedding_text(title: str, body: str) -> str:
    """What represents an article in vector space: its title, then the start of its body."""
    return f"{title}\n\n{body}"[:MAX_CHARS]


def embed_articles(article_ids: list[int]) -> dict[str, list[int]]:
    """Embed and store the articles that lack a current vector; returns what was done."""
    embedder = get_embedder()
    with connection() as conn:
        current = store.current_embeddings(conn, article_ids, embedder.name)
        todo = store.get_articles(conn, [i for i in article_ids if i not in current])
    if todo:
        vectors = embedder.embed_batch([embedding_text(a["title"], a["text"]) for a in todo])
        with connection() as conn:
            store.store_embeddings(
                conn,
                [(a["id"], a["content_hash"], v) for a, v in zip(todo, vectors)],
                embedder.name,
            )
    return {"embedded": [a["id"] for a in todo], "cached": sorted(current)}


@app.task(
    # The OpenAI client retries its own timeouts, connection errors, 429 and 5xx.
    autoretry_for=(TransientError, DatabaseUnavailable),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=3,
)
def embed_batch(article_ids: list[int]) -> dict:
    """Embed a batch of articles by id (idempotent)."""
    return embed_articles(list(article_ids))
