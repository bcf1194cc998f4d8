"""No-op stand-ins for the work tasks, under their real names, for `bench/overhead.py`.

A separate Celery app with the project's configuration (`tasks.app.build_config`, so the same
broker, backend, serializer, acks and prefetch) whose tasks are registered under the names the
article graph dispatches (`tasks.embed.embed_batch`, `tasks.summarize.summarize_article`,
`tasks.classify.classify_article`, `tasks.store.store_outcome`) plus `tasks.health.noop`. Each
returns at once the smallest result the graph's node reads (a summary says it came from the
LLM, so the graph takes its full path), touching no database and no model. Started as
`celery -A bench._noop_worker worker`. Never used outside benchmarks.
"""

from __future__ import annotations

from celery import Celery

from core.settings import get_settings
from tasks.app import build_config

app = Celery("aml-bench-noop")
app.conf.update(build_config(get_settings()))


@app.task(name="tasks.embed.embed_batch")
def embed_batch(article_ids: list[int], *args: object, **kwargs: object) -> dict:
    return {"embedded": list(article_ids), "cached": []}


@app.task(name="tasks.summarize.summarize_article")
def summarize_article(article_id: int, *args: object, **kwargs: object) -> dict:
    return {"article_id": article_id, "summary_source": "llm", "cached": True, "note": None}


@app.task(name="tasks.classify.classify_article")
def classify_article(article_id: int, *args: object, **kwargs: object) -> dict:
    return {"article_id": article_id}


@app.task(name="tasks.store.store_outcome")
def store_outcome(run_id: str, article_id: int, status: str, *args: object, **kw: object) -> dict:
    return {"article_id": article_id, "status": status}


@app.task(name="tasks.health.noop")
def noop(value: int = 0) -> int:
    return value
