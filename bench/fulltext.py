"""Article extraction quality and speed on the project's own labelled pages.

Each page in `bench/pages/<set>/` is `name.html` plus `name.txt`, the gold article text (headline,
body paragraphs, in-body subheadings, lists and tables; no byline, caption or boilerplate).
Every extractor's output is compared with the gold as a bag of words (lower-cased `\\w+`
tokens): precision, recall and F1 micro-averaged over the pages of a set, and the boilerplate
share, the share of output words whose word never occurs in the gold text. Speed is pages per
second per core: process CPU time (`time.process_time`) over several passes of the whole set.

Extractors: the project's `tasks.extract.extract_article` (trafilatura with the chosen
settings), trafilatura with its defaults, readability-lxml when installed, and a baseline of
all visible text (the body through `tasks.feedparse.html_to_text`, scripts and styles removed).
Sets: `tune` (the settings were chosen on it) and `holdout` (written after tuning, never tuned
on). Targets on holdout: word F1 >= 0.9, boilerplate share <= 5%.

    .venv/bin/python -m bench.fulltext            # a few seconds
    .venv/bin/python -m bench.fulltext --repeat 1 --set tune
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ first, not the project
    sys.path.insert(0, str(ROOT))

from bench._harness import machine, parser, table  # noqa: E402
from tasks.extract import decode_html, extract_article  # noqa: E402
from tasks.feedparse import html_to_text  # noqa: E402

PAGES = ROOT / "bench" / "pages"
SETS = ("tune", "holdout")
TARGET_F1 = 0.9
TARGET_BOILERPLATE = 0.05
_WORD = re.compile(r"\w+")
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.IGNORECASE | re.DOTALL)

Extractor = Callable[[str | bytes], "str | None"]


def words(text: str | None) -> list[str]:
    """Lower-cased word tokens; None (no text found) has none."""
    return _WORD.findall(text.lower()) if text else []


def load_set(name: str) -> list[tuple[str, bytes, str]]:
    """(page name, html bytes as stored, gold text) for every labelled page of a set, sorted by
    name. Pages are bytes in their own charset (one is windows-1252): `extract_article` decodes
    them itself, the others get `decode_html`'s string."""
    folder = PAGES / name
    pages = []
    for html_file in sorted(folder.glob("*.html")):
        gold = html_file.with_suffix(".txt")
        if not gold.exists():
            raise SystemExit(f"{html_file} has no gold text {gold.name}")
        pages.append((html_file.stem, html_file.read_bytes(), gold.read_text("utf-8")))
    return pages


def visible_text(html: str | bytes) -> str | None:
    """Baseline: every visible word of the page's body (scripts, styles, head removed)."""
    html = decode_html(html) if isinstance(html, bytes) else html
    match = _BODY.search(html)
    return html_to_text(match.group(1) if match else html) or None


def trafilatura_default(html: str | bytes) -> str | None:
    import trafilatura

    return trafilatura.extract(decode_html(html) if isinstance(html, bytes) else html)


def readability(html: str | bytes) -> str | None:
    from readability import Document

    html = decode_html(html) if isinstance(html, bytes) else html
    return html_to_text(Document(html).summary(html_partial=True)) or None


def extractors() -> dict[str, Extractor]:
    """The project's pick first, the baseline last; readability only when installed."""
    found: dict[str, Extractor] = {
        "trafilatura (ours)": extract_article,
        "trafilatura default": trafilatura_default,
    }
    try:
        import readability as _  # noqa: F401
    except ImportError:
        print("readability-lxml not installed: skipped", file=sys.stderr)
    else:
        found["readability-lxml"] = readability
    found["all visible text"] = visible_text
    return found


def score(pages: list[tuple[str, bytes, str]], extract: Extractor) -> dict[str, Any]:
    """Micro-averaged bag-of-words precision, recall, F1 and boilerplate share; per-page F1."""
    overlap = out_total = gold_total = boiler = 0
    per_page = {}
    for name, html, gold in pages:
        out_words, gold_words = Counter(words(extract(html))), Counter(words(gold))
        common = sum((out_words & gold_words).values())
        n_out, n_gold = sum(out_words.values()), sum(gold_words.values())
        overlap, out_total, gold_total = overlap + common, out_total + n_out, gold_total + n_gold
        boiler += sum(n for w, n in out_words.items() if w not in gold_words)
        p, r = common / n_out if n_out else 0.0, common / n_gold if n_gold else 0.0
        per_page[name] = round(2 * p * r / (p + r), 3) if p + r else 0.0
    precision = overlap / out_total if out_total else 0.0
    recall = overlap / gold_total if gold_total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "boilerplate": round(boiler / out_total, 4) if out_total else 0.0,
        "per_page_f1": per_page,
    }


def pages_per_cpu_second(
    pages: list[tuple[str, bytes, str]], extract: Extractor, repeat: int
) -> float:
    """Pages per CPU second of this (single-threaded) process: pages per second per core."""
    for _, html, _ in pages[:2]:
        extract(html)  # warm imports and caches outside the timing
    start = time.process_time()
    for _ in range(repeat):
        for _, html, _ in pages:
            extract(html)
    used = time.process_time() - start
    return round(len(pages) * repeat / used, 1) if used > 0 else float("inf")


def run(sets: list[str], repeat: int) -> tuple[str, dict[str, Any]]:
    rows, result = [], {}
    found = extractors()
    for set_name in sets:
        pages = load_set(set_name)
        if not pages:
            print(f"no pages in {PAGES / set_name}: skipped", file=sys.stderr)
            continue
        result[set_name] = {"pages": len(pages)}
        for label, extract in found.items():
            s = score(pages, extract)
            speed = pages_per_cpu_second(pages, extract, repeat)
            rows.append((set_name, len(pages), label, s["precision"], s["recall"], s["f1"],
                         s["boilerplate"], speed))  # fmt: skip
            key = (
                label.split(" (")[0].replace(" ", "_") if label != "trafilatura (ours)" else "pick"
            )
            result[set_name][key] = {k: v for k, v in s.items() if k != "per_page_f1"} | {
                "pages_per_s_per_core": speed
            }
            if label == "trafilatura (ours)":
                worst = sorted(s["per_page_f1"].items(), key=lambda kv: kv[1])[:3]
                result[set_name]["pick"]["worst_pages"] = dict(worst)
    report = table(rows, ("set", "pages", "extractor", "precision", "recall", "F1", "boilerplate",
                          "pages/s/core"))  # fmt: skip
    notes = []
    if "holdout" in result:
        h = result["holdout"]["pick"]
        met = h["f1"] >= TARGET_F1 and h["boilerplate"] <= TARGET_BOILERPLATE
        notes.append(
            f"holdout targets (F1 >= {TARGET_F1}, boilerplate <= {TARGET_BOILERPLATE:.0%}): "
            f"F1 {h['f1']:.3f}, boilerplate {h['boilerplate']:.1%} -> {'met' if met else 'MISSED'}"
        )
    for set_name in result:
        notes.append(
            f"{set_name} worst pages (ours, F1): {result[set_name]['pick']['worst_pages']}"
        )
    return report + "\n\n" + "\n".join(notes), result


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--set", choices=SETS, action="append", help="only this set (repeatable)")
    p.add_argument("--repeat", type=int, default=5, help="passes over each set for the speed")
    args = p.parse_args(argv)
    start = time.monotonic()
    report, result = run(args.set or list(SETS), args.repeat)
    m = machine()
    print(report)
    print(f"\nmachine: {m['nproc']} cores, {m['cpu']}, {m['ram_gb']} GB RAM; load {m['load']}; "
          f"wall {time.monotonic() - start:.1f}s")  # fmt: skip
    print(json.dumps({"bench": "fulltext", "sets": result, "pick": "trafilatura"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
