"""The Redis client for locks, leases and fleet-wide limits: one per process, patient across a
Redis restart.

Commands are retried with exponential backoff for about 40 s on connection errors and timeouts,
so a Redis that restarts mid-run (or a stale socket after it came back) costs a pause, not a
failed task. Returns None when no Redis is configured (the embedded mode).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from core.settings import get_settings

_lock = threading.Lock()
_client: tuple[int, str, Any] | None = None


def resilient_options() -> dict[str, Any]:
    """Client options that ride out a Redis restart (about 40 s of retries)."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "retry": Retry(ExponentialBackoff(cap=3.0, base=0.25), 15),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "health_check_interval": 30,
    }


def get_redis() -> Any:
    """This process's client for `REDIS_URL` (else a Redis broker), or None without Redis."""
    global _client
    url = get_settings().effective_redis_url
    if not url:
        return None
    with _lock:
        if _client is None or _client[0] != os.getpid() or _client[1] != url:
            import redis

            _client = (os.getpid(), url, redis.Redis.from_url(url, **resilient_options()))
        return _client[2]
