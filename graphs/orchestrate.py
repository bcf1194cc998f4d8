"""The `orchestrate` queue's tasks: Beat's daily digest runs the daily graph here.

A single worker (`celery -A graphs.orchestrate worker -Q orchestrate --pool solo -c 1`) runs
the daily graph exactly as `python -m graphs.run_daily` does, with the feed list of
`FEEDS_FILE` and the digest written to `DIGEST_OUT_DIR`. A run's identity is its scheduled
slot (the latest `DIGEST_AT` at or before the moment the task runs), never the clock at start,
so a run delivered late or again is the same day's run. When this worker starts, it finishes
any run of the feed list that an earlier orchestrate worker left interrupted (killed, its lease
expired with its connection): that day's digest and webhook are delivered once, late rather
than never. These are the only tasks that run a graph; work tasks never do.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

from celery.signals import worker_ready

from core.errors import RunBusy
from core.settings import get_settings
from core.timeutil import parse_iso
from graphs.runner import execute
from graphs.state import RunContext
from tasks.app import app

log = logging.getLogger(__name__)


def scheduled_slot(now: datetime, digest_at: str) -> datetime:
    """The latest daily `HH:MM` (UTC) at or before `now`: the run's identity under Beat."""
    hour, minute = (int(x) for x in digest_at.split(":"))
    slot = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return slot if slot <= now else slot - timedelta(days=1)


def _inputs(when: datetime, window_hours: float) -> dict:
    settings = get_settings()
    return {
        "run_id": f"run-{when:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
        "feeds_file": str(settings.feeds_file),
        "as_of": when.isoformat(),
        "window_hours": window_hours,
        "max_articles": None,
    }


def _summary(result) -> dict:  # noqa: ANN001 - a RunResult
    return {
        "run_id": result.run_id,
        "as_of": result.final.get("as_of"),
        "digest_dir": result.final.get("digest_dir"),
        "timings": result.timings,
        "note": result.note,
    }


@app.task(acks_late=False, ignore_result=False)
def run_daily_task(as_of: str | None = None, window_hours: float = 24.0) -> dict:
    """Run the daily graph once for its slot (acknowledged on receipt: a run whose worker dies
    is finished by the next orchestrate worker, see `resume_interrupted`)."""
    settings = get_settings()
    when = parse_iso(as_of) if as_of else scheduled_slot(datetime.now(UTC), settings.digest_at)
    context = RunContext(out_dir=str(settings.digest_out_dir))
    result = asyncio.run(execute(_inputs(when, window_hours), context))
    assert result is not None
    log.info("daily run %s done in %.1fs", result.run_id, result.timings.get("total", 0.0))
    return _summary(result)


@app.task(acks_late=False, ignore_result=False)
def resume_interrupted() -> dict | None:
    """Finish the feed list's interrupted run, if there is one (sent when this worker starts)."""
    settings = get_settings()
    context = RunContext(out_dir=str(settings.digest_out_dir))
    now = scheduled_slot(datetime.now(UTC), settings.digest_at)
    try:
        result = asyncio.run(
            execute(_inputs(now, 24.0), context, pinned=False, only_interrupted=True)
        )
    except RunBusy:
        return None  # a live run holds the list: nothing was interrupted
    if result is None:
        return None
    log.warning("finished interrupted daily run %s: %s", result.run_id, result.note)
    return _summary(result)


@worker_ready.connect
def _resume_on_start(sender=None, **_kwargs) -> None:  # noqa: ANN001
    """An orchestrate worker that starts finishes what a dead one left (queued to itself)."""
    consumer = getattr(sender, "task_consumer", None)
    queues = {q.name for q in getattr(consumer, "queues", None) or ()}
    if "orchestrate" in queues:
        resume_interrupted.apply_async(queue="orchestrate")
