"""robots.txt: may our User-Agent fetch this URL? Fetched once per origin, cached, RFC 9309.

Owns fetching each origin's `/robots.txt` through the safe fetcher (its own small byte cap and
deadline), caching what it said per origin (Redis with a TTL when Redis is configured, so the
fleet fetches it once; else in this process), and matching a URL against its rules for the
configured `USER_AGENT`'s product token. Parsing is protego's: unlike `urllib.robotparser` it
follows RFC 9309 and Google's matching (longest match wins, `*` and `$` patterns, Allow beside
Disallow), which is what site operators test their files against. Per RFC 9309: a 4xx means
no rules (allow all); a 5xx, 429, timeout or dropped connection means disallow all for now
(cached briefly, reported as transient). It must not fetch pages, touch storage or queues.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Literal

import httpx
from protego import Protego

from core.errors import FeedRefused, PermanentError, TransientError
from core.settings import get_settings

from .fetcher import fetch_url
from .redisconn import get_redis

ROBOTS_MAX_BYTES = 512_000  # RFC 9309 asks parsers to read at least 500 KiB
ROBOTS_TIMEOUT_SECONDS = 5.0  # at most; never more than PAGE_TIMEOUT_SECONDS
RULES_TTL = 24 * 3600  # RFC 9309: a cached robots.txt should not be used longer than 24 h
UNREACHABLE_TTL = 600  # a failed fetch is tried again after 10 minutes
CACHE_PREFIX = "aml:robots:"

Kind = Literal["rules", "allow_all", "disallow_all"]


@dataclass(frozen=True)
class Robots:
    """What one origin's robots.txt says: its rules, or allow/disallow all, and why."""

    kind: Kind
    body: str = ""
    note: str = ""


def check_robots(url: str, user_agent: str | None = None) -> None:
    """Return when robots.txt lets `user_agent` (default: the setting) fetch `url`.

    Raises `PermanentError` when its rules disallow the URL, `TransientError` when the origin's
    robots.txt could not be fetched for a reason worth retrying later (5xx, 429, timeout); both
    carry a one-line `brief` for reports.
    """
    agent = user_agent or get_settings().user_agent
    token = product_token(agent)
    parsed = httpx.URL(url)
    robots = rules_for(url, agent)
    if robots.kind == "allow_all":
        return
    if robots.kind == "disallow_all":
        raise TransientError(
            f"robots.txt of {parsed.host} could not be read ({robots.note}); RFC 9309 says to "
            "fetch nothing from it for now",
            brief=f"robots.txt unreachable ({robots.note})",
        )
    if not _parsed(robots.body).can_fetch(url, token):
        path = parsed.raw_path.decode("ascii", "replace")
        raise PermanentError(
            f"robots.txt of {parsed.host} disallows {path} for {token}",
            brief=f"robots.txt disallows {path} for {token}",
        )


def product_token(user_agent: str) -> str:
    """The name robots.txt groups match: "AgenticMediaLab" of "AgenticMediaLab/0.1 (+url)"."""
    return user_agent.split("/", 1)[0].split()[0] if user_agent.strip() else "*"


def rules_for(url: str, user_agent: str) -> Robots:
    """The robots.txt of `url`'s origin, from the cache or fetched once (one fetch at a time per
    origin, in this process and, with Redis, across the fleet)."""
    import redis

    try:
        return _rules_for(_origin(url), user_agent)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise TransientError(
            f"Redis unreachable for the robots.txt cache: {exc}",
            brief="Redis unreachable for the robots.txt cache",
        ) from exc


def _rules_for(origin: str, user_agent: str) -> Robots:
    found = _cache_get(origin)
    if found is not None:
        return found
    with _origin_lock(origin):
        found = _cache_get(origin)
        if found is not None:
            return found
        timeout = min(ROBOTS_TIMEOUT_SECONDS, get_settings().page_timeout_seconds)
        client = get_redis()
        lock_key, token = f"{CACHE_PREFIX}fetching:{origin}", uuid.uuid4().hex
        hold_ms = int((timeout + 5) * 1000)
        if client is not None and not client.set(lock_key, token, nx=True, px=hold_ms):
            end = time.monotonic() + hold_ms / 1000
            while time.monotonic() < end:  # another worker is fetching it: use its answer
                time.sleep(0.05)
                found = _cache_get(origin)
                if found is not None:
                    return found
        try:
            robots = _fetch(origin, user_agent, timeout)
            settled = robots.kind == "rules" or robots.note.startswith("HTTP 4")
            ttl = RULES_TTL if settled else UNREACHABLE_TTL
            _cache_put(origin, robots, ttl)
            return robots
        finally:
            if client is not None and client.get(lock_key) == token.encode():
                client.delete(lock_key)


def _fetch(origin: str, user_agent: str, timeout: float) -> Robots:
    try:
        fetched = fetch_url(
            f"{origin}/robots.txt",
            max_bytes=ROBOTS_MAX_BYTES,
            timeout=timeout,
            user_agent=user_agent,
        )
    except FeedRefused as exc:  # the page's own fetch meets the same refusal and reports it
        return Robots("allow_all", note=f"refused: {exc}")
    except TransientError as exc:
        status = f"HTTP {exc.http_status}" if exc.http_status else (exc.brief or str(exc)[:160])
        return Robots("disallow_all", note=status)
    except PermanentError as exc:
        if exc.http_status and 400 <= exc.http_status < 500:
            return Robots("allow_all", note=f"HTTP {exc.http_status}")
        return Robots("allow_all", note=exc.brief or str(exc))
    body = (fetched.content or b"").decode("utf-8", "replace")
    return Robots("rules", body=body, note=f"HTTP {fetched.http_status}")


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii').lower()}"


# --- the cache: Redis when configured, else this process --------------------------------------

_local: dict[str, tuple[float, Robots]] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()
_parsed_cache: dict[str, Protego] = {}


def _origin_lock(origin: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(origin, threading.Lock())


def _cache_get(origin: str) -> Robots | None:
    client = get_redis()
    if client is not None:
        raw = client.get(CACHE_PREFIX + origin)
        return None if raw is None else Robots(**json.loads(raw))
    with _guard:
        expires, robots = _local.get(origin, (0.0, None))
        return robots if robots is not None and expires > time.monotonic() else None


def _cache_put(origin: str, robots: Robots, ttl: int) -> None:
    client = get_redis()
    if client is not None:
        client.set(CACHE_PREFIX + origin, json.dumps(asdict(robots)), ex=ttl)
        return
    with _guard:
        _local[origin] = (time.monotonic() + ttl, robots)


def _parsed(body: str) -> Protego:
    with _guard:
        rules = _parsed_cache.get(body)
    if rules is None:
        rules = Protego.parse(body)
        with _guard:
            if len(_parsed_cache) > 256:
                _parsed_cache.clear()
            _parsed_cache[body] = rules
    return rules


def clear_local_cache() -> None:
    """Forget this process's cached robots.txt files (the Redis cache expires by its TTL)."""
    with _guard:
        _local.clear()
        _parsed_cache.clear()
