"""`python -m graphs.run_daily` as a user runs it: zero configuration, then bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE_VARS = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL",
                "OPENAI_API_KEY", "OPENAI_BASE_URL", "EMBEDDING_MODEL", "LLM_MODEL")  # fmt: skip


def run_daily(tmp: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 240):
    """Run the CLI with no services configured; the embedded database lives in a fresh dir.

    (Not under pytest's tmp_path: pytest keeps its base dir mode 700, which the embedded
    server's own user cannot traverse.)
    """
    data = tempfile.mkdtemp(prefix="aml-cli-")
    base = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    base["AML_DATA_DIR"] = data
    try:
        return subprocess.run(
            [sys.executable, "-m", "graphs.run_daily", "--out", str(tmp / "out"), *args],
            cwd=ROOT, env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    finally:
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_zero_config_run_prints_modes_and_writes_the_digest(tmp_path: Path) -> None:
    proc = run_daily(tmp_path, "--as-of", "2026-11-26T23:59:59Z")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "embedded PostgreSQL" in out and "in-process worker" in out
    assert "offline extractive summarizer" in out and "all-MiniLM-L6-v2" in out
    assert "Articles:" in out and "Stories:" in out
    digest = json.loads((tmp_path / "out" / "digest.json").read_text())
    assert digest["mode"] == "embedded"
    assert digest["articles"] and digest["stories"]
    assert (tmp_path / "out" / "digest.md").is_file()
    new = [a for a in digest["articles"] if a["status"] == "new"]
    assert new and all(a["summary_source"] == "extractive" for a in new)


@pytest.mark.slow
def test_a_run_whose_feeds_all_fail_still_writes_a_digest_and_exits_zero(tmp_path: Path) -> None:
    feeds = tmp_path / "bad.txt"
    feeds.write_text("# nothing here works\n/does/not/exist.xml\nfile:///etc/passwd\n")
    proc = run_daily(tmp_path, "--feeds", str(feeds))
    assert proc.returncode == 0, proc.stderr[-2000:]
    digest = json.loads((tmp_path / "out" / "digest.json").read_text())
    by_url = {f["url"]: f for f in digest["feeds"]}
    assert set(by_url) == {"/does/not/exist.xml", "file:///etc/passwd"}
    assert by_url["/does/not/exist.xml"]["status"] == "failed"
    assert by_url["file:///etc/passwd"]["status"] == "refused"
    assert all(f["error"] for f in digest["feeds"])
    assert digest["articles"] == []


def test_an_unreachable_database_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = run_daily(tmp_path, env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
                     timeout=60)  # fmt: skip
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: cannot reach PostgreSQL")
    assert len([line for line in lines if line.startswith("error:")]) == 1


def test_help_explains_every_flag(tmp_path: Path) -> None:
    proc = run_daily(tmp_path, "--help", timeout=60)
    assert proc.returncode == 0
    for flag in ("--feeds", "--out", "--as-of", "--window-hours", "--max-articles"):
        assert flag in proc.stdout
