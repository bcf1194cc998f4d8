"""Nothing secret leaves the process: the redactors, then a whole run checked for canaries."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from core import redact
from core.redact import (
    RedactingFilter,
    redact_dsn,
    redact_text,
    redact_url,
    redact_webhook,
)
from core.settings import Settings
from tests.conftest import ROOT
from tests.faultkit import (
    PrivatePostgres,
    PrivateRedis,
    fleet_env,
    run_daily,
    start_worker,
    stop_process,
)
from tests.feedserver import FeedServer, feed
from tests.test_durable_runs import AS_OF, write_feed
from tests.test_faults_services import _canary_role, _leaks, _pg_dump, _redis_dump


@pytest.fixture(autouse=True)
def _default_params():
    yield
    redact.configure(redact.DEFAULT_SECRET_QUERY_PARAMS, [])


def test_redact_url_masks_password_and_secret_query_values_and_keeps_the_rest():
    url = "https://ann:s3cret@feeds.example.com:8443/a%20b/rss?page=2&Token=abc&API_KEY=k#top"
    assert redact_url(url) == (
        "https://ann:***@feeds.example.com:8443/a%20b/rss?page=2&Token=***&API_KEY=***#top"
    )


def test_redact_url_leaves_a_url_without_secrets_exactly_as_written():
    url = "https://Example.com/feed.xml?page=2&sort=new&keywords=ai"
    assert redact_url(url) == url
    assert redact_url("examples/feeds/local.xml") == "examples/feeds/local.xml"


@pytest.mark.parametrize(
    "name", "token key apikey api_key access_token auth sig signature password secret".split()
)
def test_every_default_secret_parameter_is_masked(name):
    assert redact_url(f"https://h/f?{name}=CANARY") == f"https://h/f?{name}=***"


def test_secret_parameter_names_are_configurable():
    redact.configure("session", [])
    assert redact_url("https://h/f?session=x&token=y") == "https://h/f?session=***&token=y"
    assert Settings(secret_query_params="a, B").secret_query_params == "a, B"


def test_redact_dsn_masks_key_value_and_url_passwords():
    assert redact_dsn("host=db user=u password=pw dbname=x") == (
        "host=db user=u password=*** dbname=x"
    )
    assert redact_dsn("host=db password='p w' port=5") == "host=db password=*** port=5"
    assert redact_dsn("host=db sslpassword=kp user=u") == "host=db sslpassword=*** user=u"
    assert redact_dsn("postgresql://u:pw@db:5432/x?sslpassword=z&password=p&sslmode=require") == (
        "postgresql://u:***@db:5432/x?sslpassword=***&password=***&sslmode=require"
    )


def test_redact_webhook_shows_only_scheme_and_host():
    assert redact_webhook("https://hooks.slack.com/services/T0/B0/XYZ") == (
        "https://hooks.slack.com/…"
    )
    assert redact_webhook("not a url") == "***"


def test_redact_text_masks_known_secrets_urls_and_dsn_passwords_anywhere():
    text = (
        "POST https://hooks.slack.com/services/T0/B0/XYZ failed; key sk-LIVE1234; "
        "fetching 'https://h/f?token=abc' took long; password=pw1 host=db"
    )
    out = redact_text(text, ["https://hooks.slack.com/services/T0/B0/XYZ", "sk-LIVE1234"])
    for secret in ("XYZ", "sk-LIVE1234", "abc", "pw1"):
        assert secret not in out
    assert "https://h/f?token=***" in out


def test_settings_know_their_secrets_and_modes_show_none():
    s = Settings(
        database_url="host=db user=u password=DBPW1 dbname=x",
        celery_broker_url="redis://:REDISPW@h:6379/0",
        openai_api_key="sk-APIKEY1",
        openai_base_url="http://u:BASEPW@127.0.0.1:9/v1?api_key=BASEKEY",
        embedding_model="text-embedding-3-small",
        digest_webhook_url="https://hooks.slack.com/services/T/B/HOOKSECRET",
    )
    secrets = s.known_secrets()
    for value in ("DBPW1", "REDISPW", "sk-APIKEY1", "BASEPW", "BASEKEY"):
        assert value in secrets
    shown = str(s.modes())
    for value in ("DBPW1", "REDISPW", "APIKEY1", "BASEPW", "BASEKEY", "HOOKSECRET"):
        assert value not in shown
    assert "http://u:***@127.0.0.1:9/v1?api_key=***" in shown


def test_log_filter_redacts_message_args_and_tracebacks(caplog):
    redact.configure(None, ["sk-FILTERED"])
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("calling %s with %s", "https://h/f?token=TOK1", "sk-FILTERED")
        try:
            raise ValueError("bad https://u:PWX@h/")
        except ValueError:
            logger.exception("failed")
    assert "TOK1" not in caplog.text and "sk-FILTERED" not in caplog.text
    assert "PWX" not in caplog.text
    assert "https://h/f?token=***" in caplog.text


# --- canaries through whole processes ----------------------------------------------------------


class _Webhook:
    """A loopback Slack-compatible webhook that records the paths it was posted to."""

    def __init__(self) -> None:
        paths = self.paths = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def test_a_worker_logs_no_webhook_url_once_celery_has_set_up_its_logging(tmp_path: Path) -> None:
    """What the orchestrate worker does: Celery sets up logging at INFO, then the webhook is
    posted with httpx (whose INFO line is the full URL) and the URL is logged by mistake."""
    hook = _Webhook()
    secret = f"hook-canary-{uuid.uuid4().hex}"
    url = f"http://127.0.0.1:{hook.port}/services/T0/B0/{secret}"
    script = (
        "import logging, httpx\n"
        "from tasks.app import app\n"
        "app.log.setup_logging_subsystem(loglevel='INFO')\n"
        "import os; url = os.environ['DIGEST_WEBHOOK_URL']\n"
        "httpx.post(url, json={'text': 'hi'})\n"
        "logging.getLogger('graphs.daily').warning('posted to %s: done', url)\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "DIGEST_WEBHOOK_URL": url},
        )  # fmt: skip
    finally:
        hook.close()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert hook.paths == [f"/services/T0/B0/{secret}"]  # the secret URL was really used
    assert "posted to ***: done" in output  # the line is logged, the URL masked
    assert secret not in output


def _secret_feed_list(folder: Path, server: FeedServer, token: str) -> Path:
    body = (write_feed(folder, n=12).parent / "westmere.xml").read_bytes()
    server.route("/westmere.xml", feed(body))
    listed = folder / "feeds.txt"
    listed.write_text(
        f"{server.url('/westmere.xml')}?token={token}&page=1\n"
        f"{server.url('/gone.xml')}?Token={token}\n"  # a 404: its error quotes the URL
    )
    return listed


@pytest.mark.slow
def test_canaries_in_every_secret_setting_appear_in_nothing_the_run_writes(
    llm_server, tmp_path: Path
) -> None:
    secrets = {
        "feed token": f"tok-canary-{uuid.uuid4().hex}",
        "OPENAI_BASE_URL password": f"pwbase-canary-{uuid.uuid4().hex}",
        "webhook path": f"hook-canary-{uuid.uuid4().hex}",
        "OPENAI_API_KEY": f"sk-canary-{uuid.uuid4().hex}",
        "key=value DSN password": f"pwdsn-canary-{uuid.uuid4().hex}",
    }
    pg = PrivatePostgres()
    redis = PrivateRedis(tmp_path / "redis").start()
    hook = _Webhook()
    worker = run = None
    llm_server.reset()
    try:
        with FeedServer() as server:
            feeds = _secret_feed_list(tmp_path, server, secrets["feed token"])
            url_dsn = _canary_role(pg, secrets["key=value DSN password"])
            socket_dir = parse_qs(urlsplit(url_dsn).query)["host"][0]
            dsn = (f"host={socket_dir} dbname=postgres user=aml_canary "
                   f"password={secrets['key=value DSN password']}")  # fmt: skip
            base = llm_server.base_url.replace(
                "http://", f"http://reader:{secrets['OPENAI_BASE_URL password']}@"
            )
            env = fleet_env(
                redis.url,
                DATABASE_URL=dsn,
                OPENAI_API_KEY=secrets["OPENAI_API_KEY"],
                OPENAI_BASE_URL=base,
                DIGEST_WEBHOOK_URL=f"http://127.0.0.1:{hook.port}/services/T/B/"
                + secrets["webhook path"],
                FEED_ALLOWED_NETWORKS="127.0.0.0/8",
            )
            worker = start_worker(env, tmp_path / "worker.log")
            out = tmp_path / "out"
            run = run_daily(feeds, out, AS_OF.isoformat(), env, tmp_path / "run.log", "-v")
            rc = run.wait(150)
            stop_process(worker)  # its shutdown lines are in the log too
        assert rc == 0, (tmp_path / "run.log").read_text()
        # Every secret was in use: the feed was read, the LLM summarized, the webhook posted.
        digest = json.loads((out / "digest.json").read_text())
        assert [f["status"] for f in digest["feeds"]] == ["ok", "failed"], digest["feeds"]
        assert any(a["summary_source"] == "llm" for a in digest["articles"])
        assert hook.paths == [f"/services/T/B/{secrets['webhook path']}"]
        # What is published says where things are, with the secrets masked.
        port = server.port
        assert [f["url"] for f in digest["feeds"]] == [
            f"http://127.0.0.1:{port}/westmere.xml?token=***&page=1",
            f"http://127.0.0.1:{port}/gone.xml?Token=***",
        ]
        assert "404" in digest["feeds"][1]["error"]
        assert "reader:***@127.0.0.1" in digest["modes"]["llm"]
        assert "password=***" in digest["modes"]["database"]
        places: list[tuple[str, bytes]] = [
            ("worker log", (tmp_path / "worker.log").read_bytes()),
            ("run_daily output", (tmp_path / "run.log").read_bytes()),
        ]
        places += [(f"digest {p.name}", p.read_bytes()) for p in out.iterdir()]
        places += [(f"redis {name}", blob) for name, blob in _redis_dump(redis)]
        places += _pg_dump(url_dsn)
    finally:
        stop_process(run)
        stop_process(worker)
        hook.close()
        redis.stop()
        pg.cleanup()
    sizes = {name: len(blob) for name, blob in places}
    for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "runs", "digests"):
        assert sizes.get(table), f"{table} is empty: the scan would prove nothing"
    assert sorted(p.name for p in out.iterdir()) == [
        "digest.html", "digest.json", "digest.md", "digest.xml"
    ]  # fmt: skip
    # The feed URL as listed is the feed's identity: the tables that record what was listed
    # and fetched keep it, and the broker carries it to the worker that fetches it.
    keeps_feed_url = {"feeds", "run_feeds", "run_articles"}
    leaks = []
    for name, blob in places:
        found = _leaks(blob, secrets)
        if name in keeps_feed_url or name.startswith("redis "):
            found = [f for f in found if f != "feed token"]
        if found:
            leaks.append((name, found))
    assert not leaks, leaks
