"""The `orchestrate` queue's task: Beat's daily digest runs the daily graph here.

A single worker (`celery -A graphs.orchestrate worker -Q orchestrate --pool solo -c 1`) runs
the daily graph exactly as `python -m graphs.run_daily` does, with the feed list of
`FEEDS_FILE` and the digest written to `DIGEST_OUT_DIR`. This is the only task that runs a
graph; work tasks never do.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from core.settings import get_settings
from core.timeutil import parse_iso
from graphs.runner import execute
from graphs.state import RunContext
from tasks.app import app

log = logging.getLogger(__name__)


@app.task(acks_late=False, ignore_result=False)
def run_daily_task(as_of: str | None = None, window_hours: float = 24.0) -> dict:
    """Run the daily graph once (acknowledged on receipt: a lost run is re-run by Beat)."""
    settings = get_settings()
    when = parse_iso(as_of) if as_of else datetime.now(UTC)
    run_id = f"run-{when:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    inputs = {
        "run_id": run_id,
        "feeds_file": str(settings.feeds_file),
        "as_of": when.isoformat(),
        "window_hours": window_hours,
        "max_articles": None,
    }
    context = RunContext(out_dir=str(settings.digest_out_dir))
    result = asyncio.run(execute(inputs, context))
    log.info("daily run %s done in %.1fs", result.run_id, result.timings.get("total", 0.0))
    return {
        "run_id": result.run_id,
        "digest_dir": result.final.get("digest_dir"),
        "timings": result.timings,
    }
