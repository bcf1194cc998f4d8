"""Long-lived processes hold bounded memory: the in-process result store forgets what the
dispatcher has read (and caps what nobody reads), and window analysis compares the window with
the baseline in chunks instead of one dense matrix, with the same stories as before."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import numpy as np
import pytest
from celery import states

from graphs.runtime import ResultWaiter
from tasks.analyze import TrendParams, analyze_window
from tasks.app import app
from tasks.embedded import RunMemoryBackend
from tasks.stories import anchor_similarity, anchor_terms, combined_similarity
from tests.test_trends import DIMS, WINDOW_START, article, steady_baseline


@pytest.fixture
def memory_backend(monkeypatch: pytest.MonkeyPatch) -> RunMemoryBackend:
    backend = RunMemoryBackend(app=app)
    monkeypatch.setattr(RunMemoryBackend, "_store", type(RunMemoryBackend._store)())
    return backend


def test_a_result_the_waiter_has_read_leaves_the_in_process_store(memory_backend) -> None:
    async def main() -> dict:
        waiter = ResultWaiter(asyncio.get_running_loop())
        waiter.backend = memory_backend  # the embedded worker's result store
        recs = [waiter.watch(f"task-{i}") for i in range(20)]
        for i in range(20):
            memory_backend.store_result(f"task-{i}", {"n": i}, states.SUCCESS)
        return [await rec.future for rec in recs]

    metas = asyncio.run(main())
    assert [m["result"] for m in metas] == [{"n": i} for i in range(20)]
    assert len(RunMemoryBackend._store) == 0


def test_results_nobody_reads_are_capped(memory_backend, monkeypatch) -> None:
    monkeypatch.setattr(RunMemoryBackend, "max_entries", 5)
    for i in range(12):  # e.g. the losing attempt of a re-dispatched task
        memory_backend.store_result(f"orphan-{i}", i, states.SUCCESS)
    assert len(RunMemoryBackend._store) == 5
    assert memory_backend.get_result("orphan-11") == 11  # the newest are kept


def _dense_signals(window: list[dict], baseline: list[dict], stories: list[dict],
                   params: TrendParams) -> dict[str, tuple[float, list[int]]]:  # fmt: skip
    """The previous computation: one dense window x (window + baseline) matrix."""
    everything = window + baseline
    nw = len(window)
    vecs = np.stack([a["embedding"] for a in everything])
    terms = [anchor_terms(a["title"], a["text"]) for a in everything]
    sim = combined_similarity(
        vecs[:nw] @ vecs.T, anchor_similarity(terms[:nw], terms, terms), params.anchor_weight
    )
    index = {a["id"]: i for i, a in enumerate(window)}
    out = {}
    for s in stories:
        members = [index[aid] for aid in s["article_ids"]]
        to_base = sim[np.ix_(members, range(nw, len(everything)))]
        matched = np.nonzero(to_base.mean(axis=0) >= params.baseline_match)[0]
        out[s["id"]] = (round(float(1.0 - to_base.max()), 3), [int(j) for j in matched])
    return out


def test_chunked_baseline_comparison_gives_the_dense_result() -> None:
    feeds = [f"outlet{i}" for i in range(6)]
    window = [
        article(i, topic, feeds[i % 6], 1 + (i % 20))
        for i, topic in enumerate(["quake", "wrap", "bakery", "fair", "bridge"] * 8)
    ]
    baseline = []
    for n, topic in enumerate(["wrap", "bakery", "fair"]):
        baseline += steady_baseline(topic, feeds[:3], 1000 + 100 * n)
    params = TrendParams()
    kwargs = dict(window_start=WINDOW_START, window_hours=24, params=params, dims=DIMS)
    chunked = analyze_window(window, baseline, baseline_chunk=7, **kwargs)
    whole = analyze_window(window, baseline, baseline_chunk=len(baseline), **kwargs)
    assert chunked == whole
    dense = _dense_signals(window, baseline, chunked, params)
    for s in chunked:
        novelty, matched = dense[s["id"]]
        assert s["signals"]["novelty"] == novelty
        ages = [
            (baseline[j]["feed_url"],
             int((WINDOW_START - baseline[j]["placed_at"]) / timedelta(hours=24)))
            for j in matched
        ]  # fmt: skip
        assert s["signals"]["expected_sources"] == round((len(set(ages)) + 0.5) / 7.0, 3)
    assert any(s["signals"]["novelty"] < 0.5 for s in chunked)  # the baseline mattered


def test_dispatchers_of_finished_event_loops_are_let_go(fleet_worker) -> None:
    """A long-lived orchestrator runs each daily run in a new event loop (asyncio.run): the
    dispatchers, and the threads, of finished loops must not pile up."""
    import threading

    from graphs import runtime
    from tasks.health import noop

    async def one_run() -> int:
        return await runtime.get_dispatcher().call(noop.s(1))

    for _ in range(6):
        assert asyncio.run(one_run()) == 1
    asyncio.run(one_run())
    assert len(runtime._dispatchers) == 1  # only the last loop's

    def ours() -> list[threading.Thread]:
        names = ("aml-dispatch", "aml-waiter")
        return [t for t in threading.enumerate() if t.name.startswith(names)]

    for thread in ours()[:-5]:  # those of finished loops end once told to
        thread.join(10)
    assert len(ours()) <= 5  # at most one dispatcher's: its publishers and its waiter
