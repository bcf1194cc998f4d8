"""`python -m graphs.run_daily`: run the daily graph once and write the digest.

With no configuration it starts the embedded PostgreSQL and an in-process Celery worker and
reads the shipped sample feeds; with `CELERY_BROKER_URL` set it only orchestrates and the fleet
does the work. It prints which mode each part runs in, progress on a terminal, and a final
report. Exit code 0 whenever the run ran (even if every feed failed); 2 with a one-line reason
when it could not run at all; 3 when another run holds the feed list's lease.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import AMLError, RunBusy
from core.redact import install_log_redaction, redact_text
from core.settings import get_settings
from core.timeutil import parse_iso

log = logging.getLogger("aml.run_daily")

EPILOG = """
modes: every part runs embedded unless configured (see .env.example):
  DATABASE_URL        PostgreSQL with pgvector (else embedded, under AML_DATA_DIR)
  CELERY_BROKER_URL   worker fleet broker, e.g. redis://host:6379/0 (else in-process worker)
  OPENAI_API_KEY      LLM summaries via OpenAI, or OPENAI_BASE_URL for Ollama/vLLM
  EMBEDDING_MODEL     OpenAI-compatible embeddings (else offline all-MiniLM-L6-v2)

examples:
  python -m graphs.run_daily
  python -m graphs.run_daily --feeds my-feeds.txt --out site/ --window-hours 48
  python -m graphs.run_daily --as-of 2026-11-26T07:00:00Z --max-articles 200
"""


def parse_as_of(value: str | None) -> datetime:
    """ISO 8601 (a trailing Z is fine; a naive time is taken as UTC); default now."""
    if not value:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--as-of: not an ISO 8601 time: {value!r}") from exc


SAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples" / "feeds"


def samples_as_of(feeds: Path) -> datetime | None:
    """When the feed list is the bundled samples (local files dated November 2026), the time
    of their newest article: the default window then shows the samples' stories. None for any
    other feed list, which keeps "now"."""
    from tasks.feedlist import read_feed_list
    from tasks.feedparse import parse_feed
    from tasks.fetcher import read_local_feed

    sources = read_feed_list(feeds)
    if not sources or not all(
        s.is_path and Path(s.location).resolve().parent == SAMPLES_DIR for s in sources
    ):
        return None
    newest = None
    for s in sources:
        for entry in parse_feed(read_local_feed(s.location), s.location).entries:
            if entry.published and (newest is None or entry.published > newest):
                newest = entry.published
    return newest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m graphs.run_daily",
        description="Fetch the feeds, summarize and embed every new article on the Celery\n"
        "workers, group stories and find trends, and write digest.md, digest.html,\n"
        "digest.xml (Atom) and digest.json. Exit codes: 0 the run ran (even if every feed\n"
        "failed); 2 it could not run (the reason is printed); 3 another run holds this feed list.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--feeds",
        metavar="FILE",
        default=None,
        help="feed list: one URL or local path per line, '#' comments; or an OPML file "
        "(default: FEEDS_FILE, else the shipped samples examples/feeds/feeds.txt)",
    )
    p.add_argument(
        "--out", metavar="DIR", default="out", help="where the digest files go (default ./out)"
    )
    p.add_argument(
        "--as-of",
        metavar="ISO-8601",
        default=None,
        help="end of the digest window, e.g. 2026-11-26T07:00:00Z (default: now; with the "
        "bundled sample feeds, their newest article)",
    )
    p.add_argument(
        "--window-hours",
        type=float,
        default=24.0,
        metavar="H",
        help="digest window length (default 24)",
    )
    p.add_argument(
        "--max-articles",
        type=int,
        default=None,
        metavar="N",
        help="process at most N of the articles read, newest first (default: all)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_ID",
        default=None,
        help="finish an interrupted run (a new run with the same --as-of and feed list as an "
        "unfinished one resumes it by itself)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="process again the articles recorded as failed in earlier runs",
    )
    p.add_argument("--run-id", default=None, help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display, report only")
    p.add_argument("-v", "--verbose", action="store_true", help="log what every stage does")
    return p


class Progress:
    """A progress bar on a terminal; silent otherwise (logs and the report still say it)."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        self._task: Any = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), transient=True,
            )  # fmt: skip
            self._bar.start()

    def stage(self, name: str, total: int | None = None) -> None:
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def progress_events(progress: Progress):  # noqa: ANN201
    """A runner callback that moves the progress display along the graph's stages."""

    def on_event(node: str, values: dict) -> None:
        if node == "collect":
            progress.stage("processing articles", total=len(values.get("article_ids", [])))
        elif node == "process_article":
            progress.advance()
        elif node == "trends":
            progress.stage("publishing")

    return on_event


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "celery", "kombu", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        as_of = parse_as_of(args.as_of)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        settings = get_settings()
        install_log_redaction()  # after get_settings: it names the secrets to mask
        feeds = Path(args.feeds) if args.feeds else settings.feeds_file
        if not feeds.is_file():
            print(f"error: feed list not found: {feeds}", file=sys.stderr)
            return 2
        window_note = None
        if not args.as_of:
            newest = samples_as_of(feeds)
            if newest is not None:
                as_of = newest
                window_note = (
                    f"the bundled sample feeds end at {newest:%Y-%m-%dT%H:%M:%SZ}, so the window "
                    "ends at their newest article (your own feeds default to now; --as-of picks "
                    "another end)"
                )
        print("Agentic Media Lab — daily run")
        for part, mode in settings.modes().items():
            print(f"  {part:<9} {mode}")
        if window_note:
            print(f"  window    {window_note}")
        from graphs.report import format_report
        from graphs.runner import execute
        from graphs.state import RunContext
        from vectorstore import get_db

        get_db(settings)
        run_id = args.run_id or f"run-{as_of:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        inputs = {
            "run_id": run_id,
            "feeds_file": str(feeds),
            "as_of": as_of.isoformat(),
            "window_hours": args.window_hours,
            "max_articles": args.max_articles,
        }
        context = RunContext(out_dir=args.out, retry_failed=args.retry_failed)
        progress = Progress(enabled=not args.quiet)
        progress.stage("collecting feeds")
        try:
            result = asyncio.run(
                execute(
                    inputs,
                    context,
                    resume=args.resume,
                    on_event=progress_events(progress),
                    pinned=args.as_of is not None,
                )  # fmt: skip
            )
        finally:
            progress.close()
        if result.note:
            print(f"Note: {result.note}.")
        elif result.resumed:
            print(f"Resumed unfinished run {result.run_id}.")
        print(
            format_report(
                result.run_id,
                result.final,
                result.timings,
                settings.modes(),
                args.out,
                window_note=window_note,
            )  # fmt: skip
        )
        return 0
    except RunBusy as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 3
    except AMLError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user; the traceback with -v
        log.debug("run stopped", exc_info=True)
        reason = redact_text(" ".join(str(exc).split()))[:300]
        print(
            f"error: the run stopped: {type(exc).__name__}: {reason} (finish it by running the "
            "same command again; use -v for the traceback)",
            file=sys.stderr,
        )
        return 2
    finally:
        from graphs.runtime import stop_workers

        stop_workers()


if __name__ == "__main__":
    sys.exit(main())
