"""Run the daily graph N times in one process (embedded mode) for `bench/memory.py --runs N`.

What a long-lived orchestrator does (Studio, the orchestrate worker): one process, one
in-process worker, one database pool, run after run. A sampler thread reads this process's RSS
every 50 ms; after each run one line `RUN {"run": i, "peak_rss_mb": ..., "rss_mb": ...}` is
printed (the peak while that run ran, the RSS and the live threads when it ended). Never used
outside benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MB = 1024 * 1024


class Sampler(threading.Thread):
    """This process's RSS every 50 ms; `take_peak()` returns the peak since the last call."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            rss = self.proc.memory_info().rss
            with self.lock:
                self.peak = max(self.peak, rss)
            time.sleep(0.05)

    def take_peak(self) -> int:
        with self.lock:
            peak, self.peak = self.peak, self.proc.memory_info().rss
        return peak


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--feeds", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--as-of", required=True)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()

    from core.timeutil import parse_iso
    from graphs.runner import execute
    from graphs.runtime import stop_workers
    from graphs.state import RunContext

    as_of = parse_iso(args.as_of)
    sampler = Sampler()
    sampler.start()
    try:
        for i in range(1, args.runs + 1):
            inputs = {
                "run_id": f"run-mem-{i:02d}-{uuid.uuid4().hex[:6]}",
                "feeds_file": args.feeds,
                "as_of": as_of.isoformat(),
                "window_hours": 24.0,
                "max_articles": None,
            }
            t0 = time.perf_counter()
            asyncio.run(execute(inputs, RunContext(out_dir=args.out)))
            line = {
                "run": i,
                "seconds": round(time.perf_counter() - t0, 1),
                "peak_rss_mb": round(sampler.take_peak() / MB, 1),
                "rss_mb": round(sampler.proc.memory_info().rss / MB, 1),
                "threads": threading.active_count(),
            }
            print("RUN " + json.dumps(line), flush=True)
    finally:
        sampler.stopped.set()
        stop_workers()
    return 0


if __name__ == "__main__":
    sys.exit(main())
