"""Quality benchmark: copies, stories, trends and summaries against two labelled sets.

For each set, runs `python -m graphs.run_daily --feeds <set>/feeds.txt --as-of <gold as_of>` in
embedded mode (a fresh embedded PostgreSQL in a temp directory, the in-process worker, the
offline extractive summarizer and all-MiniLM-L6-v2: every service variable is unset), then
compares its digest.json with the set's gold.json:
  copies:  near-duplicate precision and recall over every article the run read: a predicted copy
           (status duplicate or near_duplicate) is right when the gold says it is a copy of the
           same earliest published text (`copy_of`);
  stories: BCubed precision, recall and F1 over the window's articles (each article's predicted
           story against its gold story);
  trends:  a predicted trending story counts as the gold story most of its articles belong to;
           precision = predicted trending stories whose gold story is trending (each gold story
           counted once), recall = gold trending stories found; `steady_trending` counts gold
           steady or series stories flagged trending (must be 0);
  summaries: coverage = share of the window's distinct texts (gold: not a copy) with a summary.
`examples/eval/` is the set the thresholds are tuned on; `examples/eval-holdout/` was written
separately and is never tuned on. Prints a table per set, then one JSON line, last: the tuning
set's figures at the top level (the keys this benchmark always printed) and both sets under
`sets`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import PY, ROOT, SERVICE_VARS, table

SETS = {"tuning": ROOT / "examples" / "eval", "holdout": ROOT / "examples" / "eval-holdout"}


def bcubed(predicted: dict[str, str], gold: dict[str, str]) -> tuple[float, float, float]:
    """BCubed precision, recall and F1 of a clustering (item -> cluster id) against gold."""
    items = list(gold)
    if not items:
        return 0.0, 0.0, 0.0
    p_members: dict[str, set[str]] = {}
    g_members: dict[str, set[str]] = {}
    for item in items:
        p_members.setdefault(predicted[item], set()).add(item)
        g_members.setdefault(gold[item], set()).add(item)
    precision = recall = 0.0
    for item in items:
        same_p, same_g = p_members[predicted[item]], g_members[gold[item]]
        both = len(same_p & same_g)
        precision += both / len(same_p)
        recall += both / len(same_g)
    precision, recall = precision / len(items), recall / len(items)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def run_pipeline(folder: Path, as_of: str, out: Path) -> tuple[float, str]:
    """run_daily on a set's feeds, embedded, with a fresh database; returns (s, stdout)."""
    data = tempfile.mkdtemp(prefix="aml-quality-")  # not under a home dir: pgserver's user
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    env["AML_DATA_DIR"] = data
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [PY, "-m", "graphs.run_daily", "--feeds", str(folder / "feeds.txt"), "--as-of", as_of,
             "--out", str(out), "--quiet"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"run_daily failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.monotonic() - start, proc.stdout


def copy_figures(digest: dict, gold: dict) -> dict:
    """Near-duplicate precision and recall over every article read (see the docstring)."""
    truth = {u: g["copy_of"] for u, g in gold["articles"].items() if g.get("copy_of")}
    predicted = {
        a["canonical_url"]: a["duplicate_of"]
        for a in digest["articles"]
        if a["status"] in ("duplicate", "near_duplicate") and a["canonical_url"] in gold["articles"]
    }
    right = sum(1 for u, d in predicted.items() if truth.get(u) == d)
    for u, d in sorted(predicted.items()):
        if truth.get(u) != d:
            print(f"  copy error: {u} predicted a copy of {d}, gold {truth.get(u)}")
    for u in sorted(set(truth) - set(predicted)):
        print(f"  copy missed: {u} (gold: a copy of {truth[u]})")
    return {
        "copy_precision": round(right / len(predicted), 4) if predicted else 1.0,
        "copy_recall": round(right / len(truth), 4) if truth else 1.0,
        "copies_predicted": len(predicted),
        "copies_gold": len(truth),
    }


def summary_coverage(digest: dict, gold: dict) -> float:
    """Share of the window's distinct texts (gold: not a copy) whose digest entry has a summary."""
    distinct = [
        a
        for a in digest["articles"]
        if a["in_window"]
        and a["canonical_url"] in gold["articles"]
        and not gold["articles"][a["canonical_url"]].get("copy_of")
    ]
    if not distinct:
        return 0.0
    return round(sum(1 for a in distinct if a.get("summary")) / len(distinct), 4)


def evaluate(digest: dict, gold: dict) -> tuple[dict, list[tuple]]:
    """The figures, and one table row per predicted story of the window."""
    window = {
        url: g["story"]
        for url, g in gold["articles"].items()
        if any(a["canonical_url"] == url and a["in_window"] for a in digest["articles"])
    }
    predicted: dict[str, str] = {}
    for story in digest["stories"]:
        for url in story["article_urls"]:
            predicted[url] = story["id"]
    missing = [u for u in window if u not in predicted]
    for url in missing:  # an article left out of every story is a story of its own
        predicted[url] = f"missing:{url}"
    p, r, f1 = bcubed(predicted, window)

    majority: dict[str, str] = {}
    rows = []
    for story in digest["stories"]:
        labels = Counter(window[u] for u in story["article_urls"] if u in window)
        if not labels:
            continue
        majority[story["id"]] = labels.most_common(1)[0][0]
        kind = gold["stories"].get(majority[story["id"]], {}).get("kind", "?")
        sig = story.get("signals") or {}
        rows.append((
            story["label"][:48], len(story["sources"]), len(story["article_urls"]),
            sig.get("expected_sources", ""), sig.get("burst", ""), sig.get("novelty", ""),
            story["trend_score"], "yes" if story["is_trending"] else "",
            majority[story["id"]][:30], kind,
        ))  # fmt: skip
    gold_hot = set(gold["trending"])
    found = {
        majority[s["id"]] for s in digest["stories"] if s["is_trending"] and s["id"] in majority
    }
    n_pred = sum(1 for s in digest["stories"] if s["is_trending"])
    steady_kinds = ("steady", "series")
    steady_hot = sorted(
        majority[s["id"]]
        for s in digest["stories"]
        if s["is_trending"]
        and gold["stories"].get(majority.get(s["id"], ""), {}).get("kind") in steady_kinds
    )
    copies = copy_figures(digest, gold)
    figures = {
        "story_precision": round(p, 4),
        "story_recall": round(r, 4),
        "story_f1": round(f1, 4),
        "trend_precision": round(len(found & gold_hot) / n_pred, 4) if n_pred else 0.0,
        "trend_recall": round(len(found & gold_hot) / len(gold_hot), 4) if gold_hot else 0.0,
        "steady_trending": len(steady_hot),
        **copies,
        "summary_coverage": summary_coverage(digest, gold),
        "articles": len(window),
        "missing": len(missing),
        "stories": len(digest["stories"]),
        "trending": n_pred,
        "gold_stories": len(set(window.values())),
        "gold_trending": len(gold_hot),
    }
    rows.sort(key=lambda r: (r[7] != "yes", -r[6]))
    return figures, rows


def measure(name: str, folder: Path) -> tuple[dict, list[tuple], float]:
    """Run the pipeline on one labelled set and evaluate its digest."""
    gold = json.loads((folder / "gold.json").read_text(encoding="utf-8"))
    out = Path(tempfile.mkdtemp(prefix=f"aml-quality-{name}-"))
    try:
        seconds, _ = run_pipeline(folder, gold["as_of"], out)
        digest = json.loads((out / "digest.json").read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    figures, rows = evaluate(digest, gold)
    return figures, rows, seconds


HEADERS = (
    "story (label)", "src", "arts", "expected", "burst", "novelty", "score", "trend",
    "gold story", "gold kind",
)  # fmt: skip


def main() -> int:
    results: dict[str, dict] = {}
    for name, folder in SETS.items():
        if not (folder / "gold.json").is_file():
            print(f"{name}: no labelled set at {folder}")
            continue
        figures, rows, seconds = measure(name, folder)
        figures["pipeline_s"] = round(seconds, 1)
        results[name] = figures
        role = "tuned on" if name == "tuning" else "never tuned on"
        print(f"\n== {name} set ({folder.relative_to(ROOT)}, {role}) ==")
        print(table(rows, HEADERS))
        print(
            f"copies: P {figures['copy_precision']:.3f} R {figures['copy_recall']:.3f} "
            f"({figures['copies_predicted']} predicted, gold {figures['copies_gold']}); "
            f"stories: BCubed P {figures['story_precision']:.3f} R {figures['story_recall']:.3f} "
            f"F1 {figures['story_f1']:.3f} over {figures['articles']} window articles; "
            f"trends: P {figures['trend_precision']:.3f} R {figures['trend_recall']:.3f} "
            f"({figures['trending']} flagged, gold {figures['gold_trending']}, steady trending "
            f"{figures['steady_trending']}); summary coverage {figures['summary_coverage']:.3f}; "
            f"pipeline {seconds:.1f}s"
        )
    top = results.get("tuning", {})
    print(json.dumps({"bench": "quality", **top, "sets": results}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
