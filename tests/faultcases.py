"""Worker-fault scenarios that must hold on every broker, written once and run on each.

Each scenario takes `broker`: a callable returning a context manager that yields a Celery app on
a broker of the test's own (results and leases on Redis) and the environment for the worker and
orchestrator processes it starts (see `faultkit.celery_on`). `test_faults.py` runs them on a
private redis-server, `test_faults_rabbitmq.py` on a private RabbitMQ vhost. Everything a
scenario starts it stops, by pid; it is never imported by production code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import psutil
from celery import Celery

from tests.conftest import ROOT, start_worker_process, stop_process
from tests.test_durable_runs import write_feed

Broker = Callable[..., AbstractContextManager[tuple[Celery, dict[str, str]]]]
SAMPLE = ROOT / "examples" / "feeds" / "tech-daily.xml"


def ingest_sample(db) -> list[int]:  # noqa: ANN001 - the `db` fixture
    """Store the sample feed's articles (in this process); their ids."""
    from tasks.feedlist import FeedSource
    from tasks.ingest import ingest_source
    from vectorstore import feeds as feed_store

    with db.connection() as conn:
        feed_id = feed_store.upsert_feed(conn, str(SAMPLE))
    return ingest_source(feed_id, FeedSource(str(SAMPLE), str(SAMPLE), True))["article_ids"]


def count(db, sql: str, *params: object) -> int:  # noqa: ANN001
    """The single number `sql` selects."""
    with db.connection() as conn:
        return conn.execute(sql, params).fetchone()[0]


def wait_for_state(result, states: set[str], timeout: float) -> str:  # noqa: ANN001
    """Poll an AsyncResult until its state is one of `states`."""
    deadline = time.monotonic() + timeout
    while result.state not in states:
        assert time.monotonic() < deadline, f"task stayed {result.state}"
        time.sleep(0.05)
    return result.state


def killed_pool_child_is_redelivered(db, tmp_path: Path, broker: Broker, queue: str) -> None:  # noqa: ANN001
    """A prefork child SIGKILLed mid-task: the task is re-delivered and completes once."""
    ids = ingest_sample(db)
    log = tmp_path / "worker.log"
    with broker() as (papp, env):
        worker = start_worker_process(queue, pool="prefork", concurrency=1, env=env,
                                      logfile=log, control_app=papp)  # fmt: skip
        try:
            result = papp.send_task("tasks.embed.embed_batch", args=[ids], queue=queue)
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


def killed_worker_is_replaced(db, llm_server, tmp_path: Path, broker: Broker) -> None:  # noqa: ANN001
    """The whole worker SIGKILLed mid-run and a new one started: the run completes with every
    article processed once."""
    feeds = write_feed(tmp_path, n=24)
    llm_server.reset()
    llm_server.latency = 0.5
    with broker() as (papp, env):
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
    assert recovered_in < 120  # re-delivery or re-dispatch, not the 1,800 s visibility timeout
    digest = json.loads((tmp_path / "out" / "digest.json").read_text())
    statuses = [a["status"] for a in digest["articles"]]
    assert len(statuses) == 24 and set(statuses) <= {"new", "near_duplicate"}, statuses
    assert count(db, "SELECT count(*) FROM embeddings") == 24
    assert count(db, "SELECT count(*) FROM summaries") == statuses.count("new")


def poison_task_is_refused(tmp_path: Path, broker: Broker, queue: str) -> None:
    """A task that kills its process on every delivery is refused after the delivery cap with
    a clear error, and the task queued behind it still runs."""
    with broker() as (papp, env):
        worker = start_worker_process(queue, pool="prefork", concurrency=1, env=env,
                                      extra_args=["--include", "tests.fault_tasks"],
                                      logfile=tmp_path / "w.log", control_app=papp)  # fmt: skip
        try:
            poison = papp.send_task("tests.fault_tasks.poison", queue=queue)
            after = papp.send_task("tasks.health.noop", args=[7], queue=queue)
            assert after.get(timeout=120) == 7
            outcome = poison.get(timeout=90, propagate=False)
        finally:
            stop_process(worker)
    assert poison.state == "FAILURE"
    assert "delivered 3 times" in str(outcome) and "its worker process dying" in str(outcome)
