"""Celery work tasks: thin, idempotent, by id. `celery -A tasks worker` finds `app` here.

Tasks never run or wait on a graph or on another task. Modules: `app` (configuration),
`ingest`, `embed`, `summarize`, `store`, `analyze`, `publish` (tasks), `providers` (LLM and
embedders), `fetcher`, `feedparse`, `feedlist` (ingestion logic), `embedded` (in-process worker).
"""

from .app import app

__all__ = ["app"]
