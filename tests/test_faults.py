"""Fault tests with real worker processes: killed children and workers, poison messages, tasks
that outlive the visibility timeout, pickle on the wire, and memory under 1,000 failures.

Each test that kills or slows workers gets a private redis-server, so the session's worker never
picks up its tasks; a second Celery app in this process talks to that broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from celery import Celery

from core.settings import Settings
from tasks.app import build_config
from tests.conftest import start_redis, start_worker_process, stop_process
from tests.test_durable_runs import write_feed

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "feeds" / "tech-daily.xml"


@contextlib.contextmanager
def private_broker(**settings: object) -> Iterator[tuple[Celery, dict[str, str]]]:
    """A redis-server of this test's own, a Celery app on it, and the env for its processes.

    Celery reads CELERY_BROKER_URL and CELERY_RESULT_BACKEND from the environment before its
    configuration, so they point at the private broker while the block runs.
    """
    proc, url = start_redis()
    env = {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url, "REDIS_URL": url}
    env.update({k.upper(): str(v) for k, v in settings.items()})
    saved = {k: os.environ.get(k) for k in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}
    os.environ.update({k: url for k in saved})
    papp = Celery("aml-test")
    papp.conf.update(
        build_config(Settings(_env_file=None, celery_broker_url=url, **settings))  # type: ignore[arg-type]
    )
    try:
        yield papp, {**os.environ, **env}
    finally:
        papp.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_process(proc)


def ingest_sample(db) -> list[int]:
    from tasks.feedlist import FeedSource
    from tasks.ingest import ingest_source
    from vectorstore import feeds as feed_store

    with db.connection() as conn:
        feed_id = feed_store.upsert_feed(conn, str(SAMPLE))
    return ingest_source(feed_id, FeedSource(str(SAMPLE), str(SAMPLE), True))["article_ids"]


def count(db, sql: str, *params: object) -> int:
    with db.connection() as conn:
        return conn.execute(sql, params).fetchone()[0]


def wait_for_state(result, states: set[str], timeout: float) -> str:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while result.state not in states:
        assert time.monotonic() < deadline, f"task stayed {result.state}"
        time.sleep(0.05)
    return result.state


@pytest.mark.slow
def test_a_killed_pool_child_mid_task_is_redelivered_and_completes_once(db, tmp_path) -> None:
    ids = ingest_sample(db)
    log = tmp_path / "worker.log"
    with private_broker() as (papp, env):
        worker = start_worker_process("fault-embed", pool="prefork", concurrency=1, env=env,
                                      logfile=log, control_app=papp)  # fmt: skip
        try:
            result = papp.send_task("tasks.embed.embed_batch", args=[ids], queue="fault-embed")
            wait_for_state(result, {"STARTED"}, 30)
            [child] = psutil.Process(worker.pid).children()
            child.kill()  # mid-task: the child is loading the model or embedding
            done = result.get(timeout=180)
        finally:
            stop_process(worker)
    assert "exited prematurely" in log.read_text()
    assert sorted(done["embedded"] + done["cached"]) == sorted(ids)
    assert count(db, "SELECT count(*) FROM articles") == len(ids)
    assert count(db, "SELECT count(*) FROM embeddings") == len(ids)


DRIVER = """
import asyncio, json, sys
from graphs.runner import execute
from graphs.state import RunContext
inputs = {"run_id": "run-kill", "feeds_file": sys.argv[1], "as_of": sys.argv[2],
          "window_hours": 24, "max_articles": None}
ctx = RunContext(out_dir=sys.argv[3], queue_deadline_seconds=8, run_deadline_seconds=6,
                 max_dispatches=4)
result = asyncio.run(execute(inputs, ctx))
print(json.dumps(result.timings))
"""


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_run_completes_by_redispatch(
    db, llm_server, tmp_path
) -> None:
    feeds = write_feed(tmp_path, n=24)
    llm_server.reset()
    llm_server.latency = 0.5
    with private_broker() as (papp, env):
        a = start_worker_process(concurrency=4, env=env, control_app=papp, name="doomed")
        orchestrator = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(feeds), "2026-11-26T23:00:00+00:00",
             str(tmp_path / "out")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        b = None
        try:
            deadline = time.monotonic() + 120
            while count(db, "SELECT count(*) FROM run_articles WHERE status <> 'pending'") < 3:
                assert orchestrator.poll() is None, orchestrator.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            a.kill()  # the whole worker, with the tasks it had taken
            a.wait(10)
            killed = time.monotonic()
            b = start_worker_process(concurrency=4, env=env, control_app=papp, name="rescue")
            out, err = orchestrator.communicate(timeout=150)
            recovered_in = time.monotonic() - killed
        finally:
            llm_server.latency = 0.0
            for proc in (a, b, orchestrator):
                if proc is not None and proc.poll() is None:
                    proc.kill()
    assert orchestrator.returncode == 0, err[-3000:]
    assert recovered_in < 120  # the re-dispatch deadlines, not the 1,800 s visibility timeout
    digest = json.loads((tmp_path / "out" / "digest.json").read_text())
    statuses = [a["status"] for a in digest["articles"]]
    assert len(statuses) == 24 and set(statuses) <= {"new", "near_duplicate"}, statuses
    assert count(db, "SELECT count(*) FROM embeddings") == 24
    assert count(db, "SELECT count(*) FROM summaries") == statuses.count("new")


@pytest.mark.slow
def test_a_poison_task_is_refused_after_the_delivery_cap_and_the_queue_drains(tmp_path) -> None:
    with private_broker() as (papp, env):
        worker = start_worker_process("fault-poison", pool="prefork", concurrency=1, env=env,
                                      extra_args=["--include", "tests.fault_tasks"],
                                      logfile=tmp_path / "w.log", control_app=papp)  # fmt: skip
        try:
            poison = papp.send_task("tests.fault_tasks.poison", queue="fault-poison")
            after = papp.send_task("tasks.health.noop", args=[7], queue="fault-poison")
            assert after.get(timeout=120) == 7
            outcome = poison.get(timeout=90, propagate=False)
        finally:
            stop_process(worker)
    assert poison.state == "FAILURE"
    assert "delivered 3 times" in str(outcome) and "its worker process dying" in str(outcome)


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
    from tasks.health import noop

    pickled = noop.apply_async(args=(41,), serializer="pickle")
    assert noop.delay(42).get(timeout=20) == 42  # the queue keeps draining
    time.sleep(1)
    assert pickled.state == "PENDING"  # no worker ever ran it or stored a result
    client = redis.Redis.from_url(services["redis"])
    assert client.get(f"celery-task-meta-{pickled.id}") is None


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
