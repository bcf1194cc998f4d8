"""Tasks that misbehave on purpose, for the fault tests only.

A worker loads them with `--include tests.fault_tasks`; production workers never do. They use
the app's default task class (`GuardedTask`), exactly like the real tasks.
"""

from __future__ import annotations

import os
import signal
import time

from tasks.app import app
from tasks.embed import embed_articles


@app.task(name="tests.fault_tasks.poison")
def poison() -> None:
    """Kill this worker process on every delivery (a parser that segfaults, say)."""
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="tests.fault_tasks.slow_embed")
def slow_embed(article_ids: list[int], seconds: float, counter_key: str) -> dict:
    """Count the execution, take `seconds`, then do the real (idempotent) embedding work."""
    import redis

    from core.settings import get_settings

    client = redis.Redis.from_url(get_settings().effective_redis_url)
    client.incr(counter_key)
    time.sleep(seconds)
    return embed_articles(article_ids)


@app.task(name="tests.fault_tasks.held", time_limit=2)
def held(marker_key: str) -> str:
    """Mark that the body ran; its 2 s time limit bounds how long a copy waits for its lease."""
    import redis

    from core.settings import get_settings

    redis.Redis.from_url(get_settings().effective_redis_url).set(marker_key, "ran")
    return "ran"
