"""The base class of every task: a delivery cap for poison messages, a lease per execution.

Celery with `acks_late` and `task_reject_on_worker_lost` re-queues a task whose process was
killed, which is what saves it from loss, but a poison task that kills its process on every
delivery would then loop forever; and Redis re-delivers a task that outlives the visibility
timeout to a second worker while the first still runs it. `GuardedTask` counts deliveries of
each (task id, retry) in Redis and refuses the one past `MAX_DELIVERIES` with a clear error
(the queue keeps draining), and holds a lease while the body runs so a parallel copy waits for
the first to finish and then returns the first one's result (kept briefly in Redis) instead of
doing the work twice or reporting success before the work is stored. Without Redis (the embedded
worker, one process) both guards are off: there is no second process to protect against.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from celery import Task

from core.errors import PermanentError, TransientError
from vectorstore import DatabaseUnavailable

from .redisconn import get_redis

log = logging.getLogger(__name__)

MAX_DELIVERIES = 3
DONE_TTL = 3600  # how long a finished task's result is kept for late parallel copies
LEASE_POLL = 0.5
LEASE_TTL = 10  # seconds; renewed every LEASE_TTL/3 while the body runs, so a dead holder's
#                 lease lapses within LEASE_TTL

# Task options for work that only touches storage: retried with backoff and jitter while
# PostgreSQL is unreachable (a restart, a failover), within the visibility timeout.
STORAGE_RETRY: dict[str, Any] = {
    "autoretry_for": (DatabaseUnavailable,),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 5,
}


class PoisonTaskError(PermanentError):
    """A task whose every delivery killed its worker process."""


class LeaseBusy(TransientError):
    """A parallel copy of this task held its lease for longer than a copy waits."""


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def _renew_until(stop: threading.Event, client: Any, key: str, token: str) -> None:
    while not stop.wait(LEASE_TTL / 3):
        try:
            client.eval(_RENEW, 1, key, token, LEASE_TTL)
        except Exception as exc:  # noqa: BLE001 - retried at the next tick
            log.warning("could not renew lease %s: %s", key, exc)


class GuardedTask(Task):
    """Default task class of the app (see the module docstring)."""

    max_deliveries = MAX_DELIVERIES

    def _lease_wait(self) -> float:
        """How long a copy waits for the running one: the task's own time limit when it
        declares one, else the app's hard limit, but at least a minute (the threads pool does
        not enforce limits, so a sound holder may run a little past them) and at most 15
        minutes (a holder still renewing after that is stuck)."""
        app_limit = self.app.conf.task_time_limit or 900
        if self.time_limit and self.time_limit != app_limit:  # the task's own declaration
            return float(self.time_limit)
        return float(min(max(app_limit, 60), 900))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        client = get_redis() if self.request.id and not self.request.is_eager else None
        if client is None:
            return super().__call__(*args, **kwargs)
        key = f"aml:task:{self.request.id}:{self.request.retries}"
        token = uuid.uuid4().hex
        # A copy delivered while another worker runs this very task waits for it; a copy
        # delivered after its worker died waits for the dead holder's lease to lapse.
        waited_until = time.monotonic() + self._lease_wait()
        while not client.set(f"{key}:lease", token, nx=True, ex=LEASE_TTL):
            if time.monotonic() > waited_until:
                # The holder keeps renewing: it is alive but stuck, or slower than any deadline
                # this copy serves. Give up (the orchestrator's deadline re-dispatches).
                raise LeaseBusy(
                    f"{self.name}[{self.request.id}]: another copy still holds this task after "
                    f"{self._lease_wait():.0f}s; not waiting longer"
                )
            time.sleep(LEASE_POLL)
        stop = threading.Event()
        try:
            done = client.get(f"{key}:done")
            if done is not None:  # finished by a parallel copy: report its result, do nothing
                log.info("%s[%s]: already done by a parallel copy", self.name, self.request.id)
                return json.loads(done)
            # Only executions count: each one that starts here and never ends killed its worker.
            executions = client.incr(f"{key}:deliveries")
            client.expire(f"{key}:deliveries", 24 * 3600)
            if executions > self.max_deliveries:
                raise PoisonTaskError(
                    f"{self.name} was delivered {executions - 1} times and each delivery ended "
                    "with its worker process dying; refused now so the queue keeps draining"
                )
            threading.Thread(
                target=_renew_until, args=(stop, client, f"{key}:lease", token), daemon=True
            ).start()
            result = super().__call__(*args, **kwargs)
            try:  # before the lease is freed: a copy that was waiting for it finds the result
                client.set(f"{key}:done", json.dumps(result), ex=DONE_TTL)
                client.delete(f"{key}:deliveries")
            except Exception as exc:  # noqa: BLE001 - the work is stored; a copy re-checks it
                log.warning("could not record %s as done: %s", self.request.id, exc)
            return result
        finally:
            stop.set()
            try:
                client.eval(_RELEASE, 1, f"{key}:lease", token)
            except Exception as exc:  # noqa: BLE001 - the lease expires by its TTL anyway
                log.warning("could not release the lease of %s: %s", self.request.id, exc)
