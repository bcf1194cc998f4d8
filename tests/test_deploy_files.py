"""The files users deploy with stay valid and in sync with the code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented_in_env_example() -> None:
    text = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        assert re.search(rf"^{name.upper()}=", text, re.MULTILINE), name
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            assert line.split("=", 1)[0].lower() in Settings.model_fields, line


@pytest.mark.parametrize(
    "files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.rabbitmq.yml"]]
)
def test_docker_compose_file_is_valid(files: list[str]) -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose missing in CI (.ci/run installs it)")
        pytest.skip(
            "docker-compose not installed (apt-get install --no-install-recommends docker-compose)"
        )
    env = {**os.environ, "REDIS_PASSWORD": "x", "POSTGRES_PASSWORD": "y", "RABBITMQ_PASSWORD": "z"}
    args = [arg for name in files for arg in ("-f", str(ROOT / name))]
    proc = subprocess.run(
        [exe, *args, "--profile", "rabbitmq", "config", "-q"],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_compose_runs_every_queue_and_exactly_one_beat() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    from tasks.app import QUEUES

    for queue in QUEUES:
        assert re.search(rf'"-Q", "[a-z,]*\b{queue}\b', text), queue
    assert text.count('"beat"') == 1
    assert "pgvector/pgvector" in text and "--appendonly" in text and "--requirepass" in text


def test_langgraph_json_names_both_exported_graphs() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    import importlib

    for name, target in config["graphs"].items():
        path, attr = target.split(":")
        module = importlib.import_module(
            path.removeprefix("./").removesuffix(".py").replace("/", ".")
        )
        graph = getattr(module, attr)
        assert graph.checkpointer is None, name
        assert name in ("article", "daily")
