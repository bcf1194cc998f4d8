"""Quality benchmark: story grouping and trend detection against the labelled evaluation set.

Runs `python -m graphs.run_daily --feeds examples/eval/feeds.txt --as-of 2026-11-20T07:00:00Z`
in embedded mode (a fresh embedded PostgreSQL in a temp directory, the in-process worker, the
offline extractive summarizer and all-MiniLM-L6-v2: every service variable is unset), then
compares its digest.json with examples/eval/gold.json:
  stories: BCubed precision, recall and F1 over the window's articles (each article's predicted
           story against its gold story);
  trends:  a predicted trending story counts as the gold story most of its articles belong to;
           precision = predicted trending stories whose gold story is trending (each gold story
           counted once), recall = gold trending stories found.
Prints a table of the window's stories, then one JSON line, last. The run's thresholds are the
RunContext defaults; they were tuned on this set, the only labelled one (see README).
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

EVAL = ROOT / "examples" / "eval"
AS_OF = "2026-11-20T07:00:00Z"


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


def run_pipeline(out: Path) -> tuple[float, str]:
    """run_daily on the evaluation feeds, embedded, with a fresh database; returns (s, stdout)."""
    data = tempfile.mkdtemp(prefix="aml-quality-")  # not under a home dir: pgserver's user
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    env["AML_DATA_DIR"] = data
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [PY, "-m", "graphs.run_daily", "--feeds", str(EVAL / "feeds.txt"), "--as-of", AS_OF,
             "--out", str(out), "--quiet"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"run_daily failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.monotonic() - start, proc.stdout


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
    figures = {
        "story_precision": round(p, 4),
        "story_recall": round(r, 4),
        "story_f1": round(f1, 4),
        "trend_precision": round(len(found & gold_hot) / n_pred, 4) if n_pred else 0.0,
        "trend_recall": round(len(found & gold_hot) / len(gold_hot), 4) if gold_hot else 0.0,
        "articles": len(window),
        "missing": len(missing),
        "stories": len(digest["stories"]),
        "trending": n_pred,
        "gold_stories": len(set(window.values())),
        "gold_trending": len(gold_hot),
    }
    rows.sort(key=lambda r: (r[7] != "yes", -r[6]))
    return figures, rows


def main() -> int:
    gold = json.loads((EVAL / "gold.json").read_text(encoding="utf-8"))
    out = Path(tempfile.mkdtemp(prefix="aml-quality-out-"))
    try:
        seconds, _ = run_pipeline(out)
        digest = json.loads((out / "digest.json").read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    figures, rows = evaluate(digest, gold)
    print(
        table(
            rows,
            (
                "story (label)",
                "src",
                "arts",
                "expected",
                "burst",
                "novelty",
                "score",
                "trend",
                "gold story",
                "gold kind",
            ),
        )  # fmt: skip
    )
    print(
        f"\nstories: BCubed P {figures['story_precision']:.3f} R {figures['story_recall']:.3f} "
        f"F1 {figures['story_f1']:.3f} over {figures['articles']} window articles "
        f"({figures['stories']} stories, gold {figures['gold_stories']}); trends: P "
        f"{figures['trend_precision']:.3f} R {figures['trend_recall']:.3f} "
        f"({figures['trending']} flagged, gold {figures['gold_trending']}); "
        f"pipeline {seconds:.1f}s"
    )
    result = {"bench": "quality", **figures, "pipeline_s": round(seconds, 1)}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
