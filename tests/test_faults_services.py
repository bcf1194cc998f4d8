"""Fault tests with real processes: Redis and PostgreSQL stopped mid-run, secrets kept out.

Each test starts its own `redis-server` (and, where the database itself is the fault or holds
the secret, its own pgserver), a real `celery worker` and `python -m graphs.run_daily` as
subprocesses, and stops exactly those. The session's services and the machine's are untouched.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from tests.conftest import ROOT, free_port
from tests.faultkit import (
    PrivatePostgres,
    PrivateRedis,
    fleet_env,
    run_daily,
    start_worker,
    stop_process,
    wait_for,
)
from tests.test_durable_runs import AS_OF, finished_outcomes, write_feed

FINAL = {"new", "near_duplicate", "duplicate", "skipped", "unchanged"}
DONE_SQL = "SELECT count(*) FROM run_articles WHERE status <> 'pending'"


def _digest(out: Path) -> dict:
    return json.loads((out / "digest.json").read_text())


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(none)"


@pytest.mark.slow
def test_redis_stopped_for_ten_seconds_mid_run_the_fleet_reconnects_and_the_run_completes(
    db, llm_server, tmp_path: Path
) -> None:
    feeds = write_feed(tmp_path)
    redis = PrivateRedis(tmp_path / "redis").start()
    worker = run = None
    llm_server.reset()
    llm_server.latency = 1.0  # 40 summaries on 8 threads: the run lasts well past the outage
    try:
        env = fleet_env(redis.url)
        worker = start_worker(env, tmp_path / "worker.log")
        run = run_daily(feeds, tmp_path / "out", AS_OF.isoformat(), env, tmp_path / "run.log", "-v")
        wait_for(lambda: finished_outcomes(db) >= 5, 120, "5 articles done", alive=(run, worker))
        redis.stop()  # SIGTERM: the AOF is written, queued messages survive
        stopped_at = finished_outcomes(db)
        time.sleep(10)
        redis.start()  # same port, same directory
        rc = run.wait(60)  # about 15 s of work is left; a lost message would wait 900 s
        assert worker.poll() is None, "the worker died with the broker"
    finally:
        llm_server.latency = 0.0
        stop_process(run)
        stop_process(worker)
        redis.stop()
    log = _tail(tmp_path / "run.log")
    assert stopped_at < 40, "the run finished before Redis was stopped"
    assert rc == 0, log
    digest = _digest(tmp_path / "out")
    statuses = [a["status"] for a in digest["articles"]]
    assert len(statuses) == 40
    failed = [(a["url"], a["error"]) for a in digest["articles"] if a["status"] == "failed"]
    assert not failed, failed  # the outage (10 s) is shorter than the publish retries (~20 s)
    assert set(statuses) <= FINAL, statuses
    with db.connection() as conn:
        counts = [
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("articles", "embeddings", "summaries")
        ]
        runs = conn.execute("SELECT id, status FROM runs").fetchall()
    assert counts == [40, 40, statuses.count("new")]
    assert runs == [(digest["run_id"], "finished")]


# run_daily with both publish-side retry policies shortened (the broker's and the result
# backend's, whose pub/sub subscription happens first in `apply_async`), so a dead Redis
# fails every dispatch in about a second instead of about twenty.
SHORT_RETRY_RUN_DAILY = """
import sys
from tasks.app import app
short = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.1, "interval_max": 0.2}
app.conf.task_publish_retry_policy = short
app.conf.result_backend_transport_options = {
    **app.conf.result_backend_transport_options, "retry_policy": short}
from graphs.run_daily import main
sys.exit(main(sys.argv[1:]))
"""
PUBLISH_ONE = """
import time
from tasks.health import noop
t = time.monotonic()
try:
    noop.apply_async()
    print("SENT", round(time.monotonic() - t, 1))
except Exception as exc:
    print("RAISED", round(time.monotonic() - t, 1), f"{type(exc).__module__}.{type(exc).__name__}",
          " ".join(str(exc).split()))
"""


@pytest.mark.slow
def test_a_publish_that_cannot_reach_redis_retries_then_fails_visibly_and_is_recorded(
    db, tmp_path: Path
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    env = fleet_env(dead)
    feeds = write_feed(tmp_path, n=3)
    # The shipped retry policy, unchanged: runs alongside the shortened run below.
    one = subprocess.Popen([sys.executable, "-c", PUBLISH_ONE], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        run = subprocess.run(
            [sys.executable, "-c", SHORT_RETRY_RUN_DAILY, "--feeds", str(feeds),
             "--out", str(tmp_path / "out"), "--as-of", AS_OF.isoformat(), "-q"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        out, _ = one.communicate(timeout=90)
    finally:
        stop_process(one)
    # One publish with the shipped policy: it retried for a while, then raised.
    assert out.startswith("RAISED"), out
    waited = float(out.split()[1])
    assert 10 <= waited <= 60, out
    # A run whose dispatches cannot be published: every article is recorded failed with the
    # reason, the run stops with an error (no digest) and stays resumable.
    assert run.returncode != 0
    assert "Traceback" in run.stderr or "error:" in run.stderr
    assert not (tmp_path / "out" / "digest.json").exists()
    with db.connection() as conn:
        outcomes = conn.execute("SELECT status, error FROM run_articles").fetchall()
        runs = conn.execute("SELECT status FROM runs").fetchall()
    assert len(outcomes) == 3, run.stdout[-2000:] + run.stderr[-3000:]
    for status, error in outcomes:
        assert status == "failed"
        assert error and ("result store" in error or "onnect" in error), error
    assert runs == [("running",)]


@pytest.mark.slow
def test_postgres_restarted_mid_run_the_run_completes_with_no_half_written_article(
    llm_server, tmp_path: Path
) -> None:
    feeds = write_feed(tmp_path)
    pg = PrivatePostgres()
    redis = PrivateRedis(tmp_path / "redis").start()
    worker = run = None
    llm_server.reset()
    llm_server.latency = 1.0

    def done() -> int:
        try:
            with psycopg.connect(pg.uri, connect_timeout=5) as conn:
                return conn.execute(DONE_SQL).fetchone()[0]
        except psycopg.Error:  # not migrated yet
            return -1

    try:
        env = fleet_env(redis.url, DATABASE_URL=pg.uri)
        worker = start_worker(env, tmp_path / "worker.log")
        run = run_daily(feeds, tmp_path / "out", AS_OF.isoformat(), env, tmp_path / "run.log", "-v")
        wait_for(lambda: done() >= 5, 120, "5 articles done", alive=(run, worker))
        pg.restart()  # pg_ctl restart -m fast -w: every connection is terminated
        restarted_at = done()
        rc = run.wait(150)
        with psycopg.connect(pg.uri) as conn:
            q = conn.execute
            counts = [q(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("articles", "embeddings", "summaries")]  # fmt: skip
            per_article = q(
                "SELECT a.id, a.state, a.content_hash, "
                "  (SELECT count(*) FROM embeddings e WHERE e.article_id = a.id "
                "     AND e.content_hash = a.content_hash), "
                "  (SELECT count(*) FROM summaries s WHERE s.article_id = a.id "
                "     AND s.content_hash = a.content_hash) "
                "FROM articles a"
            ).fetchall()
            runs = q("SELECT id, status FROM runs").fetchall()
    finally:
        llm_server.latency = 0.0
        stop_process(run)
        stop_process(worker)
        redis.stop()
        pg.cleanup()
    assert restarted_at < 40, "the run finished before PostgreSQL restarted"
    assert rc == 0, _tail(tmp_path / "run.log")
    digest = _digest(tmp_path / "out")
    statuses = {a["canonical_url"]: a["status"] for a in digest["articles"]}
    assert len(statuses) == 40
    failed = [(a["url"], a["error"]) for a in digest["articles"] if a["status"] == "failed"]
    assert not failed, failed
    assert counts[0] == counts[1] == 40
    assert counts[2] == list(statuses.values()).count("new")
    half = [(i, s, e, n) for i, s, _, e, n in per_article if s == "processed" and (e, n) != (1, 1)]
    assert not half, f"processed articles without their vector or summary: {half}"
    assert runs == [(digest["run_id"], "finished")]


# --- Secrets -----------------------------------------------------------------------------


def _b64_forms(secret: bytes) -> list[bytes]:
    """The secret as it appears inside base64 text at any of the three byte alignments
    (kombu stores message bodies base64-encoded)."""
    forms = []
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + secret)
        forms.append(enc[4 if shift else 0 : -4])
    return forms


def _leaks(blob: bytes, secrets: dict[str, str]) -> list[str]:
    found = []
    for name, value in secrets.items():
        raw = value.encode()
        if raw in blob or any(f in blob for f in _b64_forms(raw)):
            found.append(name)
    return found


def _redis_dump(redis: PrivateRedis) -> list[tuple[str, bytes]]:
    """Every key and value in every database of the private Redis, type-aware."""
    items = []
    for dbn in range(16):
        r = redis.client(dbn)
        for key in r.scan_iter(count=500):
            kind = r.type(key).decode()
            if kind == "string":
                value = r.get(key) or b""
            elif kind == "list":
                value = b"\n".join(r.lrange(key, 0, -1))
            elif kind == "hash":
                value = b"\n".join(k + b"=" + v for k, v in r.hgetall(key).items())
            elif kind == "set":
                value = b"\n".join(sorted(r.smembers(key)))
            elif kind == "zset":
                value = b"\n".join(m for m, _ in r.zrange(key, 0, -1, withscores=True))
            elif kind == "stream":
                value = repr(r.xrange(key)).encode()
            else:
                value = b""
            items.append((f"db{dbn}:{key.decode(errors='replace')} ({kind})", key + b"\n" + value))
    return items


def _pg_dump(uri: str) -> list[tuple[str, bytes]]:
    """Every row of every table in the public schema: as text, and raw bytea columns (a
    checkpoint blob is msgpack, shown as hex when cast to text)."""
    items = []
    with psycopg.connect(uri) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]  # fmt: skip
        for table in tables:
            rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()
            items.append((table, "\n".join(r[0] for r in rows).encode()))
            bytea = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "'public' AND table_name = %s AND data_type = 'bytea'", (table,))]  # fmt: skip
            for col in bytea:
                blobs = conn.execute(f'SELECT "{col}" FROM "{table}"').fetchall()
                items.append((f"{table}.{col}", b"\n".join(bytes(b[0] or b"") for b in blobs)))
    return items


def _canary_role(pg: PrivatePostgres, password: str) -> str:
    """A superuser role that must give its password (scram) on the socket; its URL."""
    with psycopg.connect(pg.uri, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE aml_canary LOGIN SUPERUSER PASSWORD '{password}'")
    hba = pg.dir / "pg_hba.conf"
    hba.write_text("local all aml_canary scram-sha-256\n" + hba.read_text())
    pg.pg_ctl("reload")
    socket_dir = parse_qs(urlsplit(pg.uri).query)["host"][0]
    return f"postgresql://aml_canary:{password}@/postgres?host={socket_dir}"


@pytest.mark.slow
def test_a_canary_api_key_and_database_password_appear_nowhere(llm_server, tmp_path: Path) -> None:
    secrets = {
        "OPENAI_API_KEY": f"sk-canary-{uuid.uuid4().hex}",
        "database password": f"pw-canary-{uuid.uuid4().hex}",
    }
    feeds = write_feed(tmp_path, n=12)
    pg = PrivatePostgres()
    redis = PrivateRedis(tmp_path / "redis").start()
    worker = run = None
    llm_server.reset()
    try:
        url = _canary_role(pg, secrets["database password"])
        wrong = url.replace(secrets["database password"], "wrong")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(wrong, connect_timeout=5).close()  # the password really is checked
        env = fleet_env(redis.url, DATABASE_URL=url, OPENAI_API_KEY=secrets["OPENAI_API_KEY"])
        worker = start_worker(env, tmp_path / "worker.log")
        run = run_daily(feeds, tmp_path / "out", AS_OF.isoformat(), env, tmp_path / "run.log", "-v")
        rc = run.wait(150)
        stop_process(worker)  # its shutdown lines are in the log too
        assert rc == 0, _tail(tmp_path / "run.log")
        # The secrets were really in use: the LLM got the key, the run stored LLM summaries.
        assert any(
            secrets["OPENAI_API_KEY"]
            in {k.lower(): v for k, v in r.headers.items()}.get("authorization", "")
            for r in llm_server.requests
        )
        digest = _digest(tmp_path / "out")
        assert any(a["summary_source"] == "llm" for a in digest["articles"]), digest["articles"]
        places: list[tuple[str, bytes]] = [
            ("worker log", (tmp_path / "worker.log").read_bytes()),
            ("run_daily output", (tmp_path / "run.log").read_bytes()),
        ]
        places += [(f"digest {p.name}", p.read_bytes()) for p in (tmp_path / "out").iterdir()]
        places += _redis_dump(redis)
        places += _pg_dump(pg.uri)
    finally:
        stop_process(run)
        stop_process(worker)
        redis.stop()
        pg.cleanup()
    sizes = {name: len(blob) for name, blob in places}
    for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "runs"):
        assert sizes.get(table), f"{table} is empty: the scan would prove nothing"
    assert any(name.startswith("db0:") for name, _ in places), "nothing was read from Redis"
    leaks = [(name, found) for name, blob in places if (found := _leaks(blob, secrets))]
    assert not leaks, leaks


def test_the_leak_scan_finds_a_secret_in_any_redis_database_type_or_base64_body(
    tmp_path: Path,
) -> None:
    secret = f"sk-canary-{uuid.uuid4().hex}"
    redis = PrivateRedis(tmp_path / "redis").start()
    try:
        body = base64.b64encode(json.dumps([["x", secret], {}, {}]).encode()).decode()
        redis.client(0).lpush("analyze", json.dumps({"body": body, "content-encoding": "utf-8"}))
        redis.client(7).hset("h", "k", f"..{secret}..")
        redis.client(15).zadd("z", {secret: 1.0})
        redis.client(3).set("clean", "nothing here")
        dump = _redis_dump(redis)
    finally:
        redis.stop()
    hits = sorted(name for name, blob in dump if _leaks(blob, {"key": secret}))
    assert hits == ["db0:analyze (list)", "db15:z (zset)", "db7:h (hash)"]
