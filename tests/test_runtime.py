"""The shared result waiter and re-dispatch, against real Redis and a real worker process."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from core.errors import DispatchTimeout
from graphs.runtime import Deadlines, Dispatcher
from tasks.health import noop


def test_hundreds_of_concurrent_awaits_share_one_poller(fleet_worker) -> None:
    async def main() -> tuple[list[int], int]:
        disp = Dispatcher(asyncio.get_running_loop())
        threads_before = len(asyncio.all_tasks())
        results = await asyncio.gather(*(disp.call(noop.s(i)) for i in range(300)))
        return results, threads_before

    results, _ = asyncio.run(main())
    assert results == list(range(300))


def test_the_waiter_polls_with_one_batched_read_per_tick(fleet_worker) -> None:
    """However many tasks are pending, each poll is one MGET (no loop per pending task)."""

    async def main() -> tuple[int, int]:
        disp = Dispatcher(asyncio.get_running_loop())
        reads = 0
        original = disp.waiter._read

        def counting(ids: list[str]) -> list:
            nonlocal reads
            reads += 1
            return original(ids)

        disp.waiter._read = counting  # count calls of the real read; behaviour unchanged
        await asyncio.gather(*(disp.call(noop.s(i)) for i in range(200)))
        return reads, 200

    reads, tasks = asyncio.run(main())
    assert reads < tasks


def test_a_task_nobody_consumes_is_redispatched_then_fails_with_the_reason(services) -> None:
    client = redis.Redis.from_url(services["redis"])
    client.delete("nobody-listens")

    async def main() -> None:
        disp = Dispatcher(asyncio.get_running_loop())
        await disp.call(noop.s(1).set(queue="nobody-listens"), Deadlines(0.3, 0.3, 3))

    start = time.monotonic()
    with pytest.raises(DispatchTimeout, match="3 dispatches"):
        asyncio.run(main())
    assert time.monotonic() - start < 10
    assert client.llen("nobody-listens") == 3  # the first dispatch and two re-dispatches
    client.delete("nobody-listens")
