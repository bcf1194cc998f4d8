"""Fleet-wide limits: LLM calls in flight and requests per minute, and counted slots for any key.

With Redis (`REDIS_URL`, else a Redis broker) both limits live in Redis and use the server's
clock, so 20 workers on 20 machines never exceed `LLM_MAX_CONCURRENCY` or
`LLM_REQUESTS_PER_MINUTE`. A concurrency slot carries a time-to-live: a worker that dies holding
one loses it when the TTL passes, never forever. Without Redis (the embedded mode, one process)
the same limits hold in-process. `fleet_slot` is the slot mechanism itself, for any key and
limit (the page fetcher holds one per host). Nothing here calls a provider or fetches.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import TransientError
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

SLOTS_KEY = "aml:llm:slots"
RATE_KEY = "aml:llm:rate"

# KEYS[1] zset of slot tokens scored by expiry; ARGV: token, limit, ttl_ms. Returns 1 or 0.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0
"""

# KEYS[1] zset of request tokens scored by time; ARGV: token, limit. Returns 0 or ms to wait.
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], 61000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + 60000 - now)
"""


@contextmanager
def fleet_slot(
    client: Any, key: str, limit: int, *, ttl: float, wait: float, what: str
) -> Iterator[None]:
    """Hold one of `limit` slots of the Redis sorted set `key` while the block runs.

    Each slot expires after `ttl` seconds (a dead holder frees it); waiting for one is bounded
    by `wait` seconds, then `TransientError(f"no {what} free in ...")`. Redis being away (after
    the client's own retries) is a `TransientError` too.
    """
    acquire = client.register_script(_ACQUIRE)
    deadline = time.monotonic() + wait
    token = uuid.uuid4().hex
    delay = 0.02
    while not _redis_call(acquire, what, keys=[key], args=[token, max(1, limit), int(ttl * 1000)]):
        if time.monotonic() > deadline:
            raise TransientError(
                f"no {what} free in {wait:.0f}s", brief=f"no {what} free in {wait:.0f}s"
            )
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(0.5, delay * 1.5)
    try:
        yield
    finally:
        try:
            client.zrem(key, token)
        except Exception as exc:  # noqa: BLE001 - the TTL frees the slot anyway
            log.warning("could not release %s (it expires by itself): %s", what, exc)


def _redis_call(script: Any, what: str, **kwargs: Any) -> Any:
    """Run a limiter script; Redis being away (after the client's own retries) is a transient
    error of the call, retried by the task."""
    import redis

    try:
        return script(**kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise TransientError(f"Redis unreachable for the {what}: {exc}") from exc


class LLMLimiter:
    """Acquire a concurrency slot for a call and a rate token for every HTTP request."""

    def __init__(
        self, settings: Settings, *, wait_timeout: float = 600.0, slot_ttl: float | None = None
    ) -> None:
        self.max_concurrency = max(1, settings.llm_max_concurrency)
        self.rpm = max(0, settings.llm_requests_per_minute)
        # A slot outlives the longest call (timeout x attempts) plus a margin, then expires.
        self.slot_ttl = (
            slot_ttl or settings.llm_timeout_seconds * (settings.llm_max_retries + 1) + 30
        )
        self.wait_timeout = wait_timeout
        self._redis = None
        if settings.effective_redis_url:
            import redis

            from .redisconn import resilient_options

            self._redis = redis.Redis.from_url(settings.effective_redis_url, **resilient_options())
            self._rate = self._redis.register_script(_RATE)
        self._local_slots = threading.BoundedSemaphore(self.max_concurrency)
        self._local_times: deque[float] = deque()
        self._local_lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """True when the limits hold across the fleet (Redis), not just this process."""
        return self._redis is not None

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of `LLM_MAX_CONCURRENCY` fleet-wide slots for the duration of a call."""
        if self._redis is None:
            if not self._local_slots.acquire(timeout=self.wait_timeout):
                raise TransientError("no LLM slot free in time")
            try:
                yield
            finally:
                self._local_slots.release()
            return
        with fleet_slot(
            self._redis,
            SLOTS_KEY,
            self.max_concurrency,
            ttl=self.slot_ttl,
            wait=self.wait_timeout,
            what="LLM slot",
        ):
            yield

    def take_request_token(self) -> None:
        """Block until one more request fits in `LLM_REQUESTS_PER_MINUTE` (0: no cap)."""
        if not self.rpm:
            return
        deadline = time.monotonic() + self.wait_timeout
        while True:
            wait = self._try_rate()
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise TransientError("LLM request rate limit: no token in time")
            time.sleep(wait * random.uniform(1.0, 1.2))

    def _try_rate(self) -> float:
        if self._redis is not None:
            ms = int(
                _redis_call(
                    self._rate, "LLM limits", keys=[RATE_KEY], args=[uuid.uuid4().hex, self.rpm]
                )
            )
            return ms / 1000.0
        with self._local_lock:
            now = time.monotonic()
            while self._local_times and self._local_times[0] <= now - 60:
                self._local_times.popleft()
            if len(self._local_times) < self.rpm:
                self._local_times.append(now)
                return 0.0
            return self._local_times[0] + 60 - now


_limiter: LLMLimiter | None = None
_limiter_lock = threading.Lock()


def get_limiter() -> LLMLimiter:
    """This process's limiter (its Redis connection is made lazily, fork-safe)."""
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            _limiter = LLMLimiter(get_settings())
        return _limiter


HOST_SLOTS_PREFIX = "aml:pages:host:"
_host_semaphores: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_host_lock = threading.Lock()


@contextmanager
def host_slot(host: str, limit: int, *, ttl: float, wait: float) -> Iterator[None]:
    """Hold one of `limit` request slots for `host` across the fleet (Redis), or within this
    process without Redis; waiting is bounded by `wait` seconds (then `TransientError`)."""
    from .redisconn import get_redis

    host = host.lower()
    client = get_redis()
    if client is not None:
        with fleet_slot(
            client, HOST_SLOTS_PREFIX + host, limit, ttl=ttl, wait=wait, what=f"slot for {host}"
        ):
            yield
        return
    with _host_lock:
        semaphore = _host_semaphores.setdefault(
            (host, limit), threading.BoundedSemaphore(max(1, limit))
        )
    if not semaphore.acquire(timeout=wait):
        raise TransientError(
            f"no slot for {host} free in {wait:.0f}s", brief=f"no slot for {host} free in time"
        )
    try:
        yield
    finally:
        semaphore.release()
