"""Helpers for fault tests: private Redis and PostgreSQL, worker and run_daily processes.

`celery_on` gives a test a Celery app on a broker of its own (Redis or RabbitMQ) with results
and leases on a Redis of its choosing, and the environment for the processes it starts.

Everything here starts processes of its own (a `redis-server` on a free port, a pgserver data
directory under a temp dir, `celery worker` and `python -m graphs.run_daily` subprocesses) and
stops only those, by pid. It never touches the machine's services nor the session's, and it is
never imported by production code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

from celery import Celery

from tests.conftest import ROOT, free_port, start_redis, stop_process


class PrivateRedis:
    """A redis-server on a fixed free port, with an append-only file in its own directory, so
    it can be stopped (SIGTERM: it writes its AOF) and started again with the same data."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        extra = ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)]
        self.proc, _ = start_redis(self.port, extra=extra)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def client(self, db: int = 0):  # noqa: ANN201
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)


@contextlib.contextmanager
def celery_on(
    broker_url: str, redis_url: str, **settings: object
) -> Iterator[tuple[Celery, dict[str, str]]]:
    """A Celery app on `broker_url` (results, leases and limits on `redis_url`) configured as
    the fleet is, and the environment for its worker and orchestrator processes.

    Celery reads CELERY_BROKER_URL and CELERY_RESULT_BACKEND from the environment before its
    configuration, so they point at these while the block runs.
    """
    from core.settings import Settings
    from tasks.app import build_config

    env = {"CELERY_BROKER_URL": broker_url, "CELERY_RESULT_BACKEND": redis_url,
           "REDIS_URL": redis_url}  # fmt: skip
    env.update({k.upper(): str(v) for k, v in settings.items()})
    saved = {k: os.environ.get(k) for k in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}
    os.environ.update({k: env[k] for k in saved})
    app = Celery("aml-test")
    app.conf.update(
        build_config(Settings(_env_file=None, celery_broker_url=broker_url,  # type: ignore[arg-type]
                              celery_result_backend=redis_url, redis_url=redis_url, **settings))
    )  # fmt: skip
    try:
        yield app, {**os.environ, **env}
    finally:
        app.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fleet_env(redis_url: str, **overrides: str) -> dict[str, str]:
    """The session's environment with the broker, results and locks on `redis_url`."""
    env = {**os.environ, "CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url,
           "REDIS_URL": redis_url}  # fmt: skip
    env.update(overrides)
    return env


def start_worker(
    env: dict[str, str], logfile: Path, *, concurrency: int = 8, timeout: float = 60
) -> subprocess.Popen:
    """A real `celery -A tasks worker` (threads pool, every work queue) on the broker of
    `env`, logging at INFO to `logfile`; consuming when this returns."""
    name = f"fault-{uuid.uuid4().hex[:6]}"
    cmd = [
        sys.executable, "-m", "celery", "-A", "tasks", "worker",
        "-Q", "ingest,llm,embed,analyze,publish", "--pool", "threads", "-c", str(concurrency),
        "-n", f"{name}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    # Ready means consuming: the worker logs "<name>@<host> ready." then. (A ping from this
    # process would go to the session's broker: Celery's CELERY_BROKER_URL variable beats any
    # broker given to an app here.)
    deadline = time.monotonic() + timeout
    while f"{name}@{socket.gethostname()} ready." not in logfile.read_text(errors="replace"):
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}: {logfile.read_text()}")
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"worker not ready in {timeout:.0f} s: {logfile.read_text()}")
        time.sleep(0.1)
    return proc


def run_daily(
    feeds: Path, out: Path, as_of: str, env: dict[str, str], logfile: Path, *extra: str
) -> subprocess.Popen:
    """`python -m graphs.run_daily` as a subprocess; stdout and stderr go to `logfile`."""
    cmd = [sys.executable, "-m", "graphs.run_daily", "--feeds", str(feeds), "--out", str(out),
           "--as-of", as_of, "-q", *extra]  # fmt: skip
    with open(logfile, "ab") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1, alive=()) -> None:  # noqa: ANN001
    """Poll `predicate` until true; fail with `what` after `timeout` s or if a process in
    `alive` exits first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for proc in alive:
            assert proc.poll() is None, f"{what}: process {proc.args[:4]} exited early"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


class PrivatePostgres:
    """A pgserver (PostgreSQL 16 + pgvector) in its own temp directory, restartable."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
            from pgserver import _commands

        self.dir = Path(tempfile.mkdtemp(prefix="aml-fault-pg-"))
        self.server = pgserver.get_server(self.dir, cleanup_mode="stop")
        self._pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]
        self.uri = self.server.get_uri()

    def pg_ctl(self, *args: str, timeout: float = 60) -> str:
        """That install's pg_ctl on this data directory, as the user pgserver runs it as."""
        return self._pg_ctl(list(args), pgdata=self.dir, user=self.server.system_user,
                            timeout=timeout)  # fmt: skip

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast", "-w")

    def cleanup(self) -> None:
        """Stop the server and delete its directory. pgserver's own cleanup only stops the
        postmaster it started, so after `restart()` it would leave the new one running."""
        import shutil

        try:
            self.pg_ctl("stop", "-m", "fast", "-w")
        except subprocess.CalledProcessError:
            pass  # already stopped
        finally:
            try:
                self.server.cleanup()
            finally:
                shutil.rmtree(self.dir, ignore_errors=True)
