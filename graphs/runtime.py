"""How graph nodes hand work to Celery and get results back without blocking the event loop.

One `Dispatcher` per event loop owns: a single shared waiter that polls the result backend for
all pending tasks in one batched read (no thread or poll loop per pending task), deadlines on
every await (a queued task and a started task each get their own) with bounded re-dispatch of
the idempotent task, and the embedding batcher that groups articles into `EMBED_BATCH_SIZE`
batches while each article keeps its own graph. A task that fails comes back as `TaskFailed`
(the worker's exception as its cause); `EXPECTED_FAILURES` is what graph steps may record and go
on from. With no broker configured it starts the in-process worker (run_daily, Studio). It never
runs work itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from celery import Signature, states
from kombu.exceptions import OperationalError as BrokerUnavailable
from redis.exceptions import RedisError

from core.errors import AMLError, DispatchTimeout, TaskFailed
from core.settings import get_settings
from tasks.app import app

log = logging.getLogger(__name__)

_embedded_lock = threading.Lock()
_embedded_worker = None


def ensure_workers() -> str:
    """Start the in-process worker when no broker is configured; returns the broker mode."""
    global _embedded_worker
    settings = get_settings()
    if settings.celery_broker_url:
        return "fleet"
    with _embedded_lock:
        if _embedded_worker is None:
            from tasks.embedded import EmbeddedWorker

            _embedded_worker = EmbeddedWorker(
                app, concurrency=settings.embedded_worker_concurrency
            ).start()
    return "embedded"


def stop_workers() -> None:
    """Stop the in-process worker, if this process started one."""
    global _embedded_worker
    with _embedded_lock:
        if _embedded_worker is not None:
            _embedded_worker.stop()
            _embedded_worker = None


@dataclass
class _Pending:
    future: asyncio.Future
    dispatched_at: float
    started_at: float | None = None
    seen: bool = False  # the backend has shown any state for it (so its message exists)


@dataclass
class Deadlines:
    queued: float = 900.0
    running: float = 300.0
    dispatches: int = 3


# A service that cannot be reached right now: the broker or result backend (Redis), the
# database (psycopg's OperationalError, which vectorstore calls DatabaseUnavailable), a socket.
SERVICE_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError and TimeoutError included
    RedisError,  # connection lost, timeouts, LOADING after a restart, read-only replica...
    BrokerUnavailable,
)


def _expected_failures() -> tuple[type[BaseException], ...]:
    from vectorstore import DatabaseUnavailable

    return (AMLError, DatabaseUnavailable, *SERVICE_OUTAGES)


# What a graph step may record and go on from: a task that failed (TaskFailed), a deadline
# (DispatchTimeout), any error this project raises on purpose (AMLError), an outage. Anything
# else (TypeError, KeyError, AttributeError...) is a bug in the orchestrator and propagates.
EXPECTED_FAILURES: tuple[type[BaseException], ...] = _expected_failures()

OUTAGE_GRACE = 60.0  # seconds after a backend outage before a task with no state is resent


def _publish(sig: Signature, task_id: str) -> None:
    """Send one task (in a publisher thread). The orchestrator reads results by polling, so
    the backend's per-task result subscription is switched off: it would only add a second
    connection to fail during a broker outage, ahead of the publish retry policy."""
    backend = app.backend  # thread-local in Celery: one per publisher thread
    if not getattr(backend, "_aml_polled", False):
        backend.on_task_call = lambda *args, **kwargs: None
        backend._aml_polled = True
    sig.clone().apply_async(task_id=task_id)


class ResultWaiter:
    """One poller for every pending task: a batched backend read per tick."""

    def __init__(self, loop: asyncio.AbstractEventLoop, min_interval: float = 0.004,
                 max_interval: float = 0.1) -> None:  # fmt: skip
        self.loop = loop
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.pending: dict[str, _Pending] = {}
        self.in_outage = False
        self.outage_ended_at: float | None = None
        self._poller: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aml-waiter")
        self.backend = app.backend

    def watch(self, task_id: str) -> _Pending:
        rec = _Pending(self.loop.create_future(), time.monotonic())
        self.pending[task_id] = rec
        if self._poller is None or self._poller.done():
            self._poller = self.loop.create_task(self._poll(), name="aml-result-waiter")
        return rec

    def forget(self, task_id: str) -> None:
        self.pending.pop(task_id, None)

    def _read(self, ids: list[str]) -> list[dict | None]:
        backend = self.backend
        metas: list[dict | None] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            keys = [backend.get_key_for_task(t) for t in chunk]
            values = backend.mget(keys)
            decoded = [backend.decode_result(v) if v is not None else None for v in values]
            if getattr(backend, "forget_on_read", False):  # the in-process store: read once
                for key, meta in zip(keys, decoded):
                    if meta is not None and meta.get("status") in states.READY_STATES:
                        backend.delete(key)
            metas += decoded
        return metas

    async def _poll(self) -> None:
        interval = self.min_interval
        while self.pending:
            ids = list(self.pending)
            try:
                metas = await self.loop.run_in_executor(self._executor, self._read, ids)
            except SERVICE_OUTAGES as exc:  # backend outage: keep waiting; deadlines run
                if not self.in_outage:
                    log.warning("result backend unreachable (%s); waiting for it", exc)
                self.in_outage = True
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:  # noqa: BLE001 - a bug, not an outage: handed to callers
                for rec in self.pending.values():
                    if not rec.future.done():
                        rec.future.set_exception(exc)  # every waiting caller raises it
                self.pending.clear()
                return
            now = time.monotonic()
            if self.in_outage:
                log.warning("result backend reachable again")
                self.in_outage, self.outage_ended_at = False, now
            progressed = False
            for task_id, meta in zip(ids, metas):
                rec = self.pending.get(task_id)
                if rec is None or meta is None:
                    continue
                rec.seen = True
                status = meta.get("status")
                if status in states.READY_STATES:
                    self.pending.pop(task_id, None)
                    if not rec.future.done():
                        rec.future.set_result(meta)
                    progressed = True
                elif status in (states.STARTED, states.RETRY) and rec.started_at is None:
                    rec.started_at = now
            interval = self.min_interval if progressed else min(self.max_interval, interval * 1.5)
            await asyncio.sleep(interval)


class Dispatcher:
    """Dispatch Celery signatures and await their results, with deadlines and re-dispatch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter = ResultWaiter(loop)
        self._publisher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aml-dispatch")
        self.batchers: dict[str, EmbedBatcher] = {}

    async def _dispatch(self, sig: Signature) -> tuple[str, _Pending]:
        task_id = str(uuid.uuid4())
        rec = self.waiter.watch(task_id)
        try:
            await self.loop.run_in_executor(self._publisher, _publish, sig, task_id)
        except Exception:
            self.waiter.forget(task_id)
            raise
        return task_id, rec

    async def call(self, sig: Signature, deadlines: Deadlines | None = None) -> Any:
        """Run `sig` on the fleet and return its result (raise its exception).

        A task still queued after `deadlines.queued`, or started but unfinished after
        `deadlines.running` (its worker may be dead), is dispatched again; the first attempt to
        finish wins. After `deadlines.dispatches` dispatches: DispatchTimeout.
        """
        d = deadlines or Deadlines()
        attempts: list[tuple[str, _Pending]] = []
        try:
            for attempt in range(1, d.dispatches + 1):
                attempts.append(await self._dispatch(sig))
                _, rec = attempts[-1]
                while True:
                    done = [r for _, r in attempts if r.future.done()]
                    if done:
                        return self._outcome(sig.name, done[0].future.result())
                    now = time.monotonic()
                    if rec.started_at is not None:
                        expires = rec.started_at + d.running
                    else:
                        expires = rec.dispatched_at + d.queued
                        ended = self.waiter.outage_ended_at
                        if not rec.seen and ended is not None and ended > rec.dispatched_at:
                            # A broker outage can swallow a message a worker was taking when
                            # Redis died: no state ever appears. Idempotent: send it again.
                            expires = min(expires, ended + OUTAGE_GRACE)
                    if now >= expires:
                        break
                    await asyncio.wait(
                        [r.future for _, r in attempts],
                        timeout=min(expires - now, 1.0),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                log.warning(
                    "%s: no result in time (attempt %d); dispatching again", sig.name, attempt
                )
            raise DispatchTimeout(
                f"{sig.name} gave no result after {d.dispatches} dispatches "
                f"(queued deadline {d.queued:.0f}s, running deadline {d.running:.0f}s): "
                "are workers consuming its queue?"
            )
        finally:
            for task_id, _ in attempts:
                self.waiter.forget(task_id)

    def _outcome(self, name: str, meta: dict) -> Any:
        if meta["status"] == states.SUCCESS:
            return meta["result"]
        exc = self.waiter.backend.exception_to_python(meta["result"])
        if isinstance(exc, BaseException):
            raise TaskFailed(name, exc) from exc
        raise TaskFailed(name, f"task {meta['status']}: {meta['result']!r}")

    def close(self) -> None:
        """Let its threads end (its loop has closed: nobody awaits anything from it)."""
        self._publisher.shutdown(wait=False, cancel_futures=True)
        self.waiter._executor.shutdown(wait=False, cancel_futures=True)

    def batcher(self, name: str, make_sig: Any, size: int, deadlines: Deadlines) -> EmbedBatcher:
        if name not in self.batchers:
            self.batchers[name] = EmbedBatcher(self, make_sig, size, deadlines)
        return self.batchers[name]


@dataclass
class EmbedBatcher:
    """Groups single-item requests into batched tasks; each caller awaits its own item.

    Items carry an ordering key (an article's placed time): `settle_before(key)` waits until
    every item submitted with a smaller key is done, so a near-duplicate check sees the vectors
    of every earlier article of the run, whichever batch they travelled in.
    """

    dispatcher: Dispatcher
    make_sig: Any  # list[int] -> Signature
    size: int
    deadlines: Deadlines
    linger: float = 0.1
    """A partial batch leaves once no item has joined it for this long (items trickle in from
    the copy checks)..."""
    max_wait: float = 1.0
    """...or once its first item has waited this long."""
    _queue: list[tuple[int, asyncio.Future, tuple]] = field(default_factory=list)
    _timer: asyncio.TimerHandle | None = None
    _first_at: float = 0.0
    _submitted: list[tuple[tuple, asyncio.Future]] = field(default_factory=list)

    async def submit(self, item: int, key: tuple = ()) -> Any:
        fut = self.dispatcher.loop.create_future()
        loop = self.dispatcher.loop
        if not self._queue:
            self._first_at = loop.time()
        self._queue.append((item, fut, key))
        self._submitted = [(k, f) for k, f in self._submitted if not f.done()]
        self._submitted.append((key, fut))
        if len(self._queue) >= self.size:
            self._flush()
        else:
            if self._timer is not None:
                self._timer.cancel()
            due = min(loop.time() + self.linger, self._first_at + self.max_wait)
            self._timer = loop.call_at(due, self._flush)
        return await fut

    async def settle_before(self, key: tuple) -> None:
        """Wait (ignoring their errors) for the items submitted with a smaller key."""
        earlier = [f for k, f in self._submitted if k < key and not f.done()]
        if earlier:
            await asyncio.wait(earlier)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.sort(key=lambda entry: entry[2])  # earliest articles in the first batch
        while self._queue:
            batch, self._queue = self._queue[: self.size], self._queue[self.size :]
            self.dispatcher.loop.create_task(self._run([(i, f) for i, f, _ in batch]))

    async def _run(self, batch: list[tuple[int, asyncio.Future]]) -> None:
        try:
            result = await self.dispatcher.call(
                self.make_sig([i for i, _ in batch]), self.deadlines
            )
        except Exception as exc:  # noqa: BLE001 - handed on, not swallowed: every caller raises it
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for _, fut in batch:
            if not fut.done():
                fut.set_result(result)


_dispatchers: dict[int, Dispatcher] = {}


def get_dispatcher() -> Dispatcher:
    """The dispatcher of the running event loop (one per loop; workers started if embedded).

    Each daily run of a long-lived process (Studio, the orchestrate worker) has its own loop:
    dispatchers of loops that have closed are let go here, and their threads told to end."""
    loop = asyncio.get_running_loop()
    key = id(loop)
    for old_key, old in list(_dispatchers.items()):
        if old.loop.is_closed():
            del _dispatchers[old_key]
            old.close()
    disp = _dispatchers.get(key)
    if disp is None or disp.loop is not loop:
        disp = _dispatchers[key] = Dispatcher(loop)
    return disp


async def db_call(fn: Any, *args: Any, attempts: int = 8, **kwargs: Any) -> Any:
    """Run a blocking storage call in a thread, retried while the database is unreachable
    (a restart mid-run): about 40 s of patience, then the error goes to the caller."""
    from vectorstore import DatabaseUnavailable

    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except DatabaseUnavailable as exc:
            if attempt == attempts:
                raise
            log.warning("database unavailable (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(8.0, delay * 2)
    raise AssertionError("unreachable")


def deadlines_from(ctx: Any) -> Deadlines:
    """The await deadlines of a run's context."""
    return Deadlines(
        queued=float(ctx.queue_deadline_seconds),
        running=float(ctx.run_deadline_seconds),
        dispatches=int(ctx.max_dispatches),
    )
