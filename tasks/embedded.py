"""The in-process worker used when no broker is configured (first run, Studio, tests of it).

A real Celery worker consuming the memory transport on a thread pool, so tasks run
concurrently, with `RunMemoryBackend`, a bounded result store: the dispatcher's waiter deletes
each result once it has read it (`forget_on_read`), and results nobody reads (the losing attempt
of a re-dispatched task) are evicted oldest first beyond `max_entries`, so Studio and the
orchestrate worker, which live for days, do not grow with every run. It wraps Celery's testing
helper and owns its start and stop. It must never be used when `CELERY_BROKER_URL` is set.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from typing import Any

from celery import Celery
from celery.backends.base import KeyValueStoreBackend

from .app import WORK_QUEUES

log = logging.getLogger(__name__)


class RunMemoryBackend(KeyValueStoreBackend):
    """Results in a process-wide ordered dict, deleted once the waiter has read them.

    Beyond `max_entries` the oldest writes go first. The waiter reads every pending result at
    least every 0.1 s, so only results nobody waits for are ever evicted, unless more than
    `max_entries` tasks finish between two of its reads.
    """

    _store: OrderedDict[bytes | str, Any] = OrderedDict()
    _store_lock = threading.Lock()
    supports_autoexpire = False
    forget_on_read = True  # the dispatcher's waiter deletes what it has read
    max_entries = 10_000

    def get(self, key: Any) -> Any:
        with self._store_lock:
            return self._store.get(key)

    def mget(self, keys: list[Any]) -> list[Any]:
        with self._store_lock:
            return [self._store.get(k) for k in keys]

    def set(self, key: Any, value: Any) -> None:
        with self._store_lock:
            self._store[key] = value
            self._store.move_to_end(key)
            while len(self._store) > self.max_entries:
                self._store.popitem(last=False)

    def delete(self, key: Any) -> None:
        with self._store_lock:
            self._store.pop(key, None)

    def incr(self, key: Any) -> int:
        with self._store_lock:
            self._store[key] = int(self._store.get(key) or 0) + 1
            self._store.move_to_end(key)
            return self._store[key]

    def expire(self, key: Any, value: Any) -> None:
        pass


class EmbeddedWorker:
    """Start and stop one in-process worker that consumes every work queue."""

    def __init__(self, app: Celery, *, concurrency: int = 16) -> None:
        if not str(app.conf.broker_url).startswith("memory"):
            raise RuntimeError("the embedded worker is only for the memory transport")
        self.app = app
        self.concurrency = concurrency
        self._stack: contextlib.ExitStack | None = None

    def start(self) -> EmbeddedWorker:
        from celery.contrib.testing.worker import start_worker

        if self._stack is not None:
            return self
        stack = contextlib.ExitStack()
        stack.enter_context(
            start_worker(
                self.app,
                pool="threads",
                concurrency=self.concurrency,
                perform_ping_check=False,
                shutdown_timeout=10.0,
                loglevel="WARNING",
                queues=list(WORK_QUEUES),
            )
        )
        self._stack = stack
        log.info("embedded worker started: %d threads", self.concurrency)
        return self

    def stop(self) -> None:
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        try:
            stack.close()
        except RuntimeError as exc:  # a task still running past the shutdown timeout
            log.warning("embedded worker did not stop cleanly: %s", exc)

    def __enter__(self) -> EmbeddedWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
