"""The worker faults of the reliability suite, repeated with RabbitMQ as the broker.

Real `celery -A tasks worker -Q ...` processes consume the fleet's own quorum queues (`embed`,
`analyze`, ...) in a vhost of the test's own on the machine's RabbitMQ (127.0.0.1:5672, added
with `rabbitmqctl add_vhost` and deleted after); results, leases and delivery counts are on the
session's Redis, as in the fleet. The scenarios shared with Redis come from `tests/faultcases.py`.
The broker-restart test starts a `rabbitmq-server` node of its own on free ports (never the
machine's) and restarts only that node. Without RabbitMQ the tests skip and say why.

Time budget: about 3 minutes on 2 shared cores (measured: 171-193 s for the five tests; a
vhost costs ~5 s of `rabbitmqctl`, a worker 5-10 s to start, the embedding model 10-20 s to
load, the poison test waits out three 10 s leases, the private node took 4-7 s per start).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.conftest import start_worker_process, stop_process
from tests.faultcases import (
    count,
    ingest_sample,
    killed_pool_child_is_redelivered,
    killed_worker_is_replaced,
    poison_task_is_refused,
)
from tests.faultkit import celery_on, fleet_env, run_daily, start_worker, wait_for
from tests.rabbitkit import RabbitNode, private_vhost, rabbit_unavailable
from tests.test_durable_runs import AS_OF, finished_outcomes, write_feed

_why = rabbit_unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_why is not None, reason=_why or "")]


@contextlib.contextmanager
def rabbit_broker(**settings: object) -> Iterator[tuple[Celery, dict[str, str]]]:
    """A private vhost on the machine's RabbitMQ as broker, the session's Redis for results and
    leases, a Celery app on them and the env for worker processes."""
    with private_vhost() as url, celery_on(url, os.environ["REDIS_URL"], **settings) as on:
        yield on


def test_on_rabbitmq_a_killed_pool_child_mid_task_is_redelivered_and_completes_once(
    db, tmp_path: Path
) -> None:
    killed_pool_child_is_redelivered(db, tmp_path, rabbit_broker, queue="embed")


def test_on_rabbitmq_a_killed_worker_is_replaced_and_the_run_completes(
    db, llm_server, tmp_path: Path
) -> None:
    killed_worker_is_replaced(db, llm_server, tmp_path, rabbit_broker)


def test_on_rabbitmq_a_poison_task_is_refused_after_the_delivery_cap_and_the_queue_drains(
    tmp_path: Path,
) -> None:
    poison_task_is_refused(tmp_path, rabbit_broker, queue="analyze")


def test_on_rabbitmq_a_task_delivered_twice_runs_its_body_once(db, tmp_path: Path) -> None:
    # At-least-once publishing (a confirm lost, the publish retried) puts the same task id on
    # the queue twice; both copies are delivered, in parallel here, and the lease lets one run.
    ids = ingest_sample(db)
    counter = f"fault:dup:{uuid.uuid4().hex}"
    log = tmp_path / "w.log"
    task_id = uuid.uuid4().hex
    with rabbit_broker() as (papp, env):
        worker = start_worker_process("embed", concurrency=2, env=env, logfile=log,
                                      extra_args=["--include", "tests.fault_tasks"],
                                      control_app=papp)  # fmt: skip
        try:
            for _ in range(2):
                result = papp.send_task("tests.fault_tasks.slow_embed", args=[ids, 3, counter],
                                        queue="embed", task_id=task_id)  # fmt: skip
            done = result.get(timeout=120)
            wait_for(lambda: log.read_text().count(f"[{task_id}] succeeded") == 2, 60,
                     "both copies to finish", alive=(worker,))  # fmt: skip
            executions = int(redis.Redis.from_url(env["REDIS_URL"]).get(counter) or 0)
            # A countdown goes through Celery's native delayed delivery on quorum queues.
            later = papp.send_task("tasks.health.noop", args=[5], queue="embed", countdown=1)
            assert later.get(timeout=60) == 5
        finally:
            stop_process(worker)
    assert "delayed delivery will not be available" not in log.read_text()
    assert log.read_text().count(f"slow_embed[{task_id}] received") == 2
    assert executions == 1  # the second copy waited for the lease and reported the same result
    assert sorted(done["embedded"] + done["cached"]) == sorted(ids)
    assert count(db, "SELECT count(*) FROM embeddings") == len(ids)


FINAL = {"new", "near_duplicate", "duplicate", "skipped", "unchanged"}


def test_rabbitmq_restarted_mid_run_the_fleet_reconnects_and_the_run_completes(
    db, llm_server, tmp_path: Path
) -> None:
    feeds = write_feed(tmp_path)
    node = RabbitNode()
    worker = run = None
    llm_server.reset()
    llm_server.latency = 1.0  # 40 summaries on 8 threads: the run lasts well past the restart
    try:
        node.start()
        env = fleet_env(os.environ["REDIS_URL"], CELERY_BROKER_URL=node.url)
        worker = start_worker(env, tmp_path / "worker.log")
        run = run_daily(feeds, tmp_path / "out", AS_OF.isoformat(), env, tmp_path / "run.log", "-v")
        wait_for(lambda: finished_outcomes(db) >= 5, 120, "5 articles done", alive=(run, worker))
        node.stop()  # rabbitmqctl -n <our node> stop: connections close, queues are on disk
        stopped_at = finished_outcomes(db)
        node.start()  # same ports, same mnesia directory
        rc = run.wait(120)
        assert worker.poll() is None, "the worker died with the broker"
    finally:
        llm_server.latency = 0.0
        stop_process(run)
        stop_process(worker)
        node.cleanup()
    print(f"private RabbitMQ node started in {', '.join(f'{s:.1f}' for s in node.started_in)} s")
    log = (tmp_path / "run.log").read_text(errors="replace")[-4000:]
    assert stopped_at < 40, "the run finished before RabbitMQ was stopped"
    assert rc == 0, log
    digest = json.loads((tmp_path / "out" / "digest.json").read_text())
    statuses = [a["status"] for a in digest["articles"]]
    assert len(statuses) == 40
    failed = [(a["url"], a["error"]) for a in digest["articles"] if a["status"] == "failed"]
    assert not failed, failed
    assert set(statuses) <= FINAL, statuses
    with db.connection() as conn:
        counts = [
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("articles", "embeddings", "summaries")
        ]
        runs = conn.execute("SELECT id, status FROM runs").fetchall()
    assert counts == [40, 40, statuses.count("new")]
    assert runs == [(digest["run_id"], "finished")]
