"""Memory benchmark: peak resident memory of `python -m graphs.run_daily` in embedded mode.

Runs the command as a first-time user does: no DATABASE_URL, broker or LLM configured, so it
starts the embedded PostgreSQL (under a fresh AML_DATA_DIR temp dir) and the in-process Celery
worker, and summarizes extractively with the offline MiniLM model; feeds are the shipped
samples (examples/feeds/feeds.txt) with --as-of at their date. Every 50 ms it samples
  python: RSS of run_daily and all its descendants (psutil), and
  postgres: the embedded server's processes (the postmaster daemonizes, so it is found by its
            data directory, not as a child), counted as PSS so the shared buffers that every
            backend maps are counted once, not once per backend.
peak_rss_mb is the peak of their sum: the memory the command makes the machine hold. The table
also shows each part's own peak. The embedded server is stopped afterwards if run_daily left it
running.

With `--runs N` (N > 1) it instead runs the daily graph N times in ONE process
(bench/_repeat_daily.py, embedded mode, as Studio or the orchestrate worker do) and prints that
process's peak RSS during each run: a long-lived process must stay flat, not grow run after run.
The JSON line keeps `peak_rss_mb` (the highest per-run peak) and adds `runs`,
`peak_rss_mb_per_run`, `growth_mb` (the last run's peak minus the second's: the first run
loads the models) and `threads_per_run` (live threads after each run).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import PY, ROOT, Services, parser, run_benchmark, table

MB = 1024 * 1024


def _postgres_procs(data_dir: Path) -> list:
    import psutil

    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] == "postgres" and str(data_dir) in " ".join(p.info["cmdline"] or []):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _sample(proc, postmasters: list) -> tuple[int, int]:  # noqa: ANN001
    import psutil

    py = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                py += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
    except psutil.NoSuchProcess:
        pass
    pg = 0
    for pm in postmasters:
        try:
            members = [pm, *pm.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in members:
            try:
                pg += p.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
    return py, pg


def _stop_leftover(data_dir: Path) -> bool:
    """Stop the embedded server if run_daily left it running; True when one was stopped."""
    if not _postgres_procs(data_dir):
        return False
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "stop"], pgdata=data_dir, user="pgserver")
    return True


def body(s: Services, args) -> tuple[str, dict]:  # noqa: ANN001
    import psutil

    env = s.export()  # no services: every part embedded; AML_DATA_DIR in the temp dir
    data_dir = (Path(env["AML_DATA_DIR"]) / "pg").resolve()
    out = s.tmp / "out"
    feeds = ROOT / "examples" / "feeds" / "feeds.txt"
    cmd = [PY, "-m", "graphs.run_daily", "--feeds", str(feeds), "--out", str(out),
           "--as-of", args.as_of, "-q"]  # fmt: skip
    log = (s.tmp / "run_daily.log").open("w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    ps = psutil.Process(proc.pid)
    peak = peak_py = peak_pg = 0
    postmasters: list = []
    next_scan = 0.0
    samples = 0
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now >= next_scan:  # the server appears once run_daily starts it
                postmasters = [
                    p
                    for p in _postgres_procs(data_dir)
                    if p.ppid() not in {q.pid for q in _postgres_procs(data_dir)}
                ]
                next_scan = now + 1.0
            py, pg = _sample(ps, postmasters)
            samples += 1
            peak_py, peak_pg, peak = max(peak_py, py), max(peak_pg, pg), max(peak, py + pg)
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        stopped = _stop_leftover(data_dir)
    wall = time.perf_counter() - t0
    log.seek(0)
    output = log.read()
    log.close()
    if proc.returncode != 0:
        raise RuntimeError(f"run_daily exited {proc.returncode}: {output[-3000:]}")
    articles = next((ln for ln in output.splitlines() if ln.startswith("Articles:")), "?")
    rows = [
        ("run_daily + descendants (RSS)", peak_py / MB),
        ("embedded PostgreSQL (PSS)", peak_pg / MB),
        ("peak of the sum", peak / MB),
    ]
    report = "\n".join(
        [
            f"Memory benchmark: python -m graphs.run_daily, embedded mode, sample feeds, "
            f"{wall:.1f}s, {samples} samples",
            f"  {articles}",
            table(rows, ("process group", "peak MB")),
            "",
            "embedded server left running by run_daily and stopped here"
            if stopped
            else "embedded server stopped by run_daily itself",
        ]
    )
    return report, {"bench": "memory", "peak_rss_mb": round(peak / MB, 1)}


def body_repeated(s: Services, args) -> tuple[str, dict]:  # noqa: ANN001
    """The daily graph `args.runs` times in one process: peak RSS per run."""
    env = s.export()
    data_dir = (Path(env["AML_DATA_DIR"]) / "pg").resolve()
    feeds = ROOT / "examples" / "feeds" / "feeds.txt"
    cmd = [PY, "-m", "bench._repeat_daily", "--feeds", str(feeds), "--out", str(s.tmp / "out"),
           "--as-of", args.as_of, "--runs", str(args.runs)]  # fmt: skip
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        _stop_leftover(data_dir)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"_repeat_daily exited {proc.returncode}: {proc.stderr[-3000:]}")
    per_run = [json.loads(ln[4:]) for ln in proc.stdout.splitlines() if ln.startswith("RUN ")]
    peaks = [r["peak_rss_mb"] for r in per_run]
    growth = round(peaks[-1] - peaks[min(1, len(peaks) - 1)], 1)
    rows = [
        (f"run {r['run']:>2} ({r['seconds']:.1f}s)", r["peak_rss_mb"], r["threads"])
        for r in per_run
    ]
    report = "\n".join(
        [
            f"Memory benchmark: the daily graph {args.runs} times in one process, embedded mode, "
            f"sample feeds, {wall:.1f}s",
            table(rows, ("run", "peak RSS MB", "threads after")),
            "",
            f"growth from run 2 to run {len(peaks)}: {growth:+.1f} MB",
        ]
    )
    return report, {
        "bench": "memory",
        "peak_rss_mb": max(peaks),
        "runs": len(peaks),
        "peak_rss_mb_per_run": peaks,
        "growth_mb": growth,
        "threads_per_run": [r["threads"] for r in per_run],
    }


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--as-of", default="2026-11-26T23:59:59Z", help="window end (sample date)")
    p.add_argument(
        "--runs", type=int, default=1, help="N > 1: the daily graph N times in one process"
    )
    args = p.parse_args()
    if args.runs > 1:
        return run_benchmark("memory", lambda s: body_repeated(s, args), keep=args.keep)
    return run_benchmark("memory", lambda s: body(s, args), keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
