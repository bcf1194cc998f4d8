"""Fault tests with real worker processes: killed children and workers, poison messages, tasks
that outlive the visibility timeout, pickle on the wire, and memory under 1,000 failures.

Each test that kills or slows workers gets a private redis-server, so the session's worker never
picks up its tasks; a second Celery app in this process talks to that broker. The worker-fault
scenarios live in `tests/faultcases.py`; `test_faults_rabbitmq.py` runs them on RabbitMQ.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest
import redis
from celery import Celery

from tests.conftest import start_redis, start_worker_process, stop_process
from tests.faultcases import (
    count,
    ingest_sample,
    killed_pool_child_is_redelivered,
    killed_worker_is_replaced,
    poison_task_is_refused,
)
from tests.faultkit import celery_on


@contextlib.contextmanager
def private_broker(**settings: object) -> Iterator[tuple[Celery, dict[str, str]]]:
    """A redis-server of this test's own as broker, result store and lease store, a Celery app
    on it, and the env for its processes (see `faultkit.celery_on`)."""
    proc, url = start_redis()
    try:
        with celery_on(url, url, **settings) as (papp, env):
            yield papp, env
    finally:
        stop_process(proc)


@pytest.mark.slow
def test_a_killed_pool_child_mid_task_is_redelivered_and_completes_once(db, tmp_path) -> None:
    killed_pool_child_is_redelivered(db, tmp_path, private_broker, queue="fault-embed")


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_run_completes_by_redispatch(
    db, llm_server, tmp_path
) -> None:
    killed_worker_is_replaced(db, llm_server, tmp_path, private_broker)


@pytest.mark.slow
def test_a_poison_task_is_refused_after_the_delivery_cap_and_the_queue_drains(tmp_path) -> None:
    poison_task_is_refused(tmp_path, private_broker, queue="fault-poison")


@pytest.mark.slow
def test_a_task_outliving_the_visibility_timeout_runs_once_on_two_workers(db, tmp_path) -> None:
    ids = ingest_sample(db)
    counter = f"fault:slow:{uuid.uuid4().hex}"
    with private_broker(celery_visibility_timeout=3) as (papp, env):
        workers = [
            start_worker_process("fault-slow", concurrency=2, env=env, name=f"slow{i}",
                                 extra_args=["--include", "tests.fault_tasks"],
                                 logfile=tmp_path / f"w{i}.log", control_app=papp)
            for i in range(2)
        ]  # fmt: skip
        try:
            result = papp.send_task(
                "tests.fault_tasks.slow_embed", args=[ids, 8, counter], queue="fault-slow"
            )
            done = result.get(timeout=120)
            time.sleep(4)  # let any late copy (re-delivered again) finish too
            client = redis.Redis.from_url(env["REDIS_URL"])
            executions = int(client.get(counter) or 0)
            logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
        finally:
            for w in workers:
                stop_process(w)
    assert executions == 1  # the body ran once; the copy waited and reported the same result
    assert logs.count(f"slow_embed[{result.id}] received") >= 2  # a copy was re-delivered
    assert sorted(done["embedded"] + done["cached"]) == sorted(ids)
    assert count(db, "SELECT count(*) FROM embeddings") == len(ids)


def test_a_pickle_message_is_refused_and_never_executed(fleet_worker, services) -> None:
    import socket

    from tasks.app import app
    from tasks.health import noop

    client = redis.Redis.from_url(services["redis"])
    queue = f"fault-pickle-{uuid.uuid4().hex[:6]}"
    pickled = noop.apply_async(args=(41,), serializer="pickle", queue=queue)
    assert [m for m in client.lrange(queue, 0, -1) if pickled.id.encode() in m]  # waiting
    worker = [f"fleet@{socket.gethostname()}"]
    app.control.add_consumer(queue, destination=worker, reply=True)
    try:
        assert noop.apply_async(args=(42,), queue=queue).get(timeout=20) == 42  # drains
        time.sleep(1)
    finally:
        app.control.cancel_consumer(queue, destination=worker, reply=True)
    assert client.llen(queue) == 0  # the worker took it off the queue ...
    assert not [v for v in client.hvals("unacked") if pickled.id.encode() in v]  # ... and let go
    assert pickled.state == "PENDING"  # refused: no worker ran it or stored a result
    assert client.get(f"celery-task-meta-{pickled.id}") is None


@pytest.mark.slow
def test_a_copy_waits_a_bounded_time_for_a_lease_a_stuck_holder_keeps(tmp_path) -> None:
    marker = f"fault:held:{uuid.uuid4().hex}"
    task_id = uuid.uuid4().hex
    with private_broker() as (papp, env):
        client = redis.Redis.from_url(env["REDIS_URL"])
        client.set(f"aml:task:{task_id}:0:lease", "a stuck holder", ex=120)
        worker = start_worker_process("fault-held", concurrency=1, env=env, name="held",
                                      extra_args=["--include", "tests.fault_tasks"],
                                      control_app=papp)  # fmt: skip
        try:
            started = time.monotonic()
            result = papp.send_task(
                "tests.fault_tasks.held", args=[marker], queue="fault-held", task_id=task_id
            )
            with pytest.raises(Exception) as raised:
                result.get(timeout=60)
            waited = time.monotonic() - started
            ran = client.get(marker)
        finally:
            stop_process(worker)
    assert "LeaseBusy" in type(raised.value).__name__ or "still holds" in str(raised.value)
    assert ran is None  # the body never ran beside the holder
    assert waited < 30  # bounded by the task's 2 s time limit, not the holder's 120 s lease


def _rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


@pytest.mark.slow
def test_a_thousand_failing_tasks_keep_worker_memory_bounded(tmp_path) -> None:
    from celery.result import ResultSet

    with private_broker() as (papp, env):
        worker = start_worker_process("fault-mem", pool="prefork", concurrency=1, env=env,
                                      logfile=tmp_path / "w.log", control_app=papp)  # fmt: skip
        try:

            def fail(n: int) -> ResultSet:
                return ResultSet(
                    [
                        papp.send_task(
                            "tasks.store.store_outcome", args=["r", i, "bogus"], queue="fault-mem"
                        )
                        for i in range(n)
                    ]  # fmt: skip
                )

            fail(100).join(timeout=120, propagate=False)
            [first_child] = psutil.Process(worker.pid).children()
            before = _rss_mb(worker.pid)
            results = fail(1000)
            outcomes = results.join(timeout=300, propagate=False)
            after = _rss_mb(worker.pid)
            children = psutil.Process(worker.pid).children()
        finally:
            stop_process(worker)
    assert len(outcomes) == 1000
    assert all(isinstance(o, ValueError) and "bogus" in str(o) for o in outcomes)
    assert after - before < 60, (before, after)
    # worker_max_tasks_per_child (1,000) replaced the child along the way
    assert first_child.pid not in [c.pid for c in children]
