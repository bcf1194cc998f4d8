"""Fleet-wide LLM limits through a real Redis, across real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from core.settings import Settings
from tasks.limits import RATE_KEY, SLOTS_KEY, LLMLimiter

ROOT = Path(__file__).resolve().parent.parent

CALLER = """
import sys
from concurrent.futures import ThreadPoolExecutor
from tasks.summarize import llm_summary
body = " ".join(["The council approved the new harbour budget of 12 million dollars."] * 6)
with ThreadPoolExecutor(8) as pool:
    results = list(pool.map(lambda i: llm_summary(f"Title {i}", body), range(6)))
assert all(r is not None for r, _ in results), results
"""


def _clear(url: str) -> None:
    redis.Redis.from_url(url).delete(SLOTS_KEY, RATE_KEY)


@pytest.mark.slow
def test_three_processes_never_exceed_llm_max_concurrency(services, llm_server) -> None:
    _clear(services["redis"])
    deadline = time.monotonic() + 10
    while llm_server.in_flight and time.monotonic() < deadline:  # an earlier test's hung call
        time.sleep(0.1)
    llm_server.reset()
    llm_server.latency = 0.3
    env = {**os.environ, "LLM_MAX_CONCURRENCY": "2"}
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", CALLER], cwd=ROOT, env=env) for _ in range(3)
        ]
        assert [p.wait(120) for p in procs] == [0, 0, 0]
    finally:
        llm_server.latency = 0.0
    assert len(llm_server.chat_requests()) == 18
    assert llm_server.peak_concurrency <= 2
    assert llm_server.rejected == 0


def test_a_slot_held_by_a_killed_worker_is_freed_by_its_ttl(services) -> None:
    _clear(services["redis"])
    holder = (
        "import os, signal\n"
        "from core.settings import Settings\n"
        "from tasks.limits import LLMLimiter\n"
        "lim = LLMLimiter(Settings(llm_max_concurrency=1), slot_ttl=2)\n"
        "with lim.slot():\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", holder], cwd=ROOT, env=os.environ.copy())
    assert proc.returncode == -9
    limiter = LLMLimiter(Settings(llm_max_concurrency=1), wait_timeout=0.5)
    try:
        with limiter.slot():
            raise AssertionError("the dead worker's slot should still be held")
    except Exception as exc:  # noqa: BLE001
        assert "no LLM slot" in str(exc)
    time.sleep(2.2)
    waited = time.monotonic()
    with LLMLimiter(Settings(llm_max_concurrency=1), wait_timeout=5).slot():
        pass
    assert time.monotonic() - waited < 2


def test_requests_per_minute_is_shared_and_counts_every_request(services) -> None:
    _clear(services["redis"])
    a = LLMLimiter(Settings(llm_requests_per_minute=5), wait_timeout=1)
    b = LLMLimiter(Settings(llm_requests_per_minute=5), wait_timeout=1)
    for lim in (a, b, a, b, a):
        lim.take_request_token()
    assert b._try_rate() > 50  # the sixth must wait for the oldest to leave the minute
    started = time.monotonic()
    try:
        a.take_request_token()
        raise AssertionError("a sixth request within the minute was allowed")
    except Exception as exc:  # noqa: BLE001
        assert "rate limit" in str(exc)
    assert time.monotonic() - started < 2
    _clear(services["redis"])
