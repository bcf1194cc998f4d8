"""Runs the daily graph durably: one run per feed list at a time, checkpointed, resumable.

Shared by `python -m graphs.run_daily` and Beat's orchestrate task. It takes the feed list's
lease (a second run of the same list refuses to start), finds an unfinished run of the same
window and list to resume (or resumes the one named), runs the daily graph with the PostgreSQL
checkpointer on the run's id as thread, streams progress, and marks the run finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from core.errors import AMLError, RunBusy
from core.settings import get_settings
from core.timeutil import parse_iso
from graphs.daily import builder, feeds_key
from tasks.feedlist import read_feed_list
from vectorstore import connection, get_db, runs
from vectorstore.checkpoints import RunLease, open_checkpointer

log = logging.getLogger(__name__)

STAGES = (("collect", "collect"), ("articles", "process_article"), ("trends", "trends"),
          ("publish", "publish"))  # fmt: skip


class RunResult:
    """What a finished run returns: its id, final state, seconds per stage, whether it was a
    resumed run, and a note for the user when the run is not the one asked for."""

    def __init__(
        self, run_id: str, final: dict, timings: dict[str, float], resumed: bool,
        note: str | None = None,
    ) -> None:  # fmt: skip
        self.run_id = run_id
        self.final = final
        self.timings = timings
        self.resumed = resumed
        self.note = note


def _resolve_run_id(
    inputs: dict, resume: str | None, key: str, pinned: bool
) -> tuple[str, bool, str | None]:
    """(run id, resumed, note). Holding the list's lease, any unfinished run of the list was
    interrupted: the same window is resumed; with no window asked for (`pinned` False: the CLI's
    default "now"), the latest interrupted run of the list is resumed instead of being lost
    (`inputs` then take its window)."""
    with connection() as conn:
        if resume:
            run = runs.get_run(conn, resume)
            if run is None:
                raise AMLError(f"--resume: no run with id {resume!r}")
            if run["status"] == "finished":
                raise AMLError(f"--resume: run {resume} already finished")
            return resume, True, None
        found = runs.unfinished_run(conn, parse_iso(inputs["as_of"]), key)
        if found:
            return found, True, None
        if not pinned:
            interrupted = runs.interrupted_run(conn, key)
            if interrupted is not None:
                note = (
                    f"an interrupted run of this feed list ({interrupted['id']}, window ending "
                    f"{interrupted['as_of']:%Y-%m-%dT%H:%M:%SZ}) was finished instead of "
                    "starting a new one, so that day's digest is not lost; run the command "
                    "again for a digest of now"
                )
                inputs.update(
                    as_of=interrupted["as_of"].isoformat(),
                    window_hours=float(interrupted["window_hours"]),
                )
                return str(interrupted["id"]), True, note
    return inputs["run_id"], False, None


async def execute(
    inputs: dict,
    context: Any,
    *,
    resume: str | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    pinned: bool = True,
    only_interrupted: bool = False,
) -> RunResult | None:
    """Run (or resume) the daily graph for `inputs`; raises RunBusy if the list is leased.

    `pinned` False: the window was not asked for, so an interrupted run of the list is
    resumed first (see `_resolve_run_id`). `only_interrupted`: resume an interrupted run if
    there is one, else run nothing and return None (the orchestrate worker at start)."""
    db = get_db(get_settings())
    key = feeds_key(read_feed_list(inputs["feeds_file"]))
    lease = RunLease(db.url, key)
    if not lease.try_acquire():
        raise RunBusy(
            "another run is already working on this feed list; not starting a second "
            "(it releases the list when it ends or its process dies)"
        )
    try:
        inputs = dict(inputs)
        run_id, resumed, note = _resolve_run_id(inputs, resume, key, pinned)
        if only_interrupted and not resumed:
            return None
        async with open_checkpointer(db.url) as saver:
            graph = builder.compile(checkpointer=saver, name="daily")
            config = {"configurable": {"thread_id": run_id}, "max_concurrency": 2000}
            snapshot = await graph.aget_state(config)
            if resumed and snapshot.next:
                log.info("resuming run %s at %s", run_id, ", ".join(snapshot.next))
                stream_input: dict | None = None
            else:
                stream_input = {**inputs, "run_id": run_id}
            final, timings = await _stream(graph, stream_input, config, context, on_event)
            final = {**(await graph.aget_state(config)).values, **final}
        with connection() as conn:
            runs.finish_run(conn, run_id, status="finished", report={"timings": timings})
        return RunResult(run_id, final, timings, resumed, note)
    finally:
        lease.release()


async def _stream(
    graph: Any,
    stream_input: dict | None,
    config: dict,
    context: Any,
    on_event: Callable[[str, dict], None] | None,
) -> tuple[dict, dict[str, float]]:
    marks: dict[str, float] = {"start": time.monotonic()}
    final: dict = {}
    async for update in graph.astream(stream_input, config, context=context, stream_mode="updates"):
        for node, values in update.items():
            marks[node] = time.monotonic()
            if on_event is not None:
                on_event(node, values or {})
            for k, v in (values or {}).items():
                if k != "outcomes":
                    final[k] = v
    timings: dict[str, float] = {}
    prev = marks["start"]
    for stage, node in STAGES:
        if node in marks:
            timings[stage] = marks[node] - prev
            prev = marks[node]
    timings["total"] = time.monotonic() - marks["start"]
    return final, timings
