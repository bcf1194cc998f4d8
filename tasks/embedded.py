"""The in-process worker used when no broker is configured (first run, Studio, tests of it).

A real Celery worker consuming the memory transport on a thread pool, so tasks run
concurrently, with `RunMemoryBackend`, a result store that keeps every result of the run (the
`cache+memory://` backend evicts after 5,000). It wraps Celery's testing helper and owns its
start and stop. It must never be used when `CELERY_BROKER_URL` is set.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from celery import Celery
from celery.backends.base import KeyValueStoreBackend

from .app import WORK_QUEUES

log = logging.getLogger(__name__)


class RunMemoryBackend(KeyValueStoreBackend):
    """Results in a process-wide dict: nothing is evicted while the process lives."""

    _store: dict[bytes | str, Any] = {}
    _store_lock = threading.Lock()
    supports_autoexpire = False

    def get(self, key: Any) -> Any:
        return self._store.get(key)

    def mget(self, keys: list[Any]) -> list[Any]:
        with self._store_lock:
            return [self._store.get(k) for k in keys]

    def set(self, key: Any, value: Any) -> None:
        with self._store_lock:
            self._store[key] = value

    def delete(self, key: Any) -> None:
        with self._store_lock:
            self._store.pop(key, None)

    def incr(self, key: Any) -> int:
        with self._store_lock:
            self._store[key] = int(self._store.get(key) or 0) + 1
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
