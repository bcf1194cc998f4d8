"""The end-of-run report printed by run_daily: modes, feeds, articles, stories, time per stage.

Built from the digest written for the run, so the report and digest.json never disagree.
Formatting only: it reads the digest file and returns text.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

STATUSES = ("new", "unchanged", "duplicate", "near_duplicate", "skipped", "failed")


def format_report(
    run_id: str,
    final: dict,
    timings: dict[str, float],
    modes: dict[str, str],
    out_dir: str,
    *,
    window_note: str | None = None,
) -> str:
    """A plain-text report of one run."""
    path = Path(final.get("digest_dir") or out_dir) / "digest.json"
    digest = json.loads(path.read_text(encoding="utf-8"))
    feeds = digest["feeds"]
    articles = digest["articles"]
    by_status = Counter(a["status"] for a in articles)
    feed_status = Counter(f["status"] for f in feeds)
    lines = ["", f"Run {run_id} — window of {digest['window_hours']} h ending {digest['as_of']}"]
    if window_note:
        lines.append(f"  ({window_note})")
    lines.append("Modes: " + "; ".join(f"{k}: {v}" for k, v in modes.items()))
    lines.append(
        f"Feeds: {len(feeds)} listed — "
        + ", ".join(
            f"{feed_status.get(s, 0)} {s}" for s in ("ok", "not_modified", "failed", "refused")
        )
    )
    for f in feeds:
        if f["status"] in ("failed", "refused"):
            health = [f"HTTP {f['http_status']}"] if f.get("http_status") else []
            if (f.get("consecutive_failures") or 0) > 1:
                health.append(f"{f['consecutive_failures']} failures in a row")
            note = f" ({', '.join(health)})" if health else ""
            lines.append(f"  ✗ {f['url']}: {f['status']}{note}: {f['error']}")
        elif f["error"]:
            lines.append(f"  ! {f['url']}: read with a warning: {f['error']}")
        dropped = f.get("dropped") or []
        if dropped:
            why = Counter(d["reason"] for d in dropped)
            reasons = ", ".join(f"{n} {reason}" for reason, n in why.most_common())
            lines.append(f"  ! {f['url']}: {len(dropped)} entries dropped ({reasons})")
    lines.append(
        f"Articles: {len(articles)} read — "
        + ", ".join(f"{by_status.get(s, 0)} {s.replace('_', '-')}" for s in STATUSES)
    )
    tried = [a for a in articles if a.get("text_source") == "page" or a.get("text_error")]
    if tried:
        used = sum(a.get("text_source") == "page" for a in tried)
        why = Counter(a["text_error"] for a in tried if a.get("text_error"))
        lines.append(
            f"Pages: {len(tried)} teasers had their page fetched, {used} gave the full text"
            + (": not used: " + "; ".join(f"{n}× {r}" for r, n in why.most_common()) if why else "")
        )
    copies = [a for a in articles if a["status"] in ("duplicate", "near_duplicate")]
    if copies:
        kept = {a["duplicate_of"] for a in copies}
        lines.append(
            f"Copies: {len(copies)} articles carry the text of {len(kept)} "
            f"{'other' if len(kept) == 1 else 'others'} (exact or lightly edited); each text is "
            "summarized once and its copies point to it"
        )
    for a in articles:
        if a["status"] == "failed":
            lines.append(f"  ✗ {a['canonical_url']}: {a['error']}")
    in_window = sum(a["in_window"] for a in articles)
    stories = digest["stories"]
    lines.append(
        f"Stories: {len(stories)} in the window ({in_window} of this run's articles fall in it, "
        f"with any stored earlier); {sum(s['is_trending'] for s in stories)} trending"
    )
    if articles and not in_window:
        newest = max((a["published"] or a["first_seen"] for a in articles), default="")
        lines.append(
            f"  note: no article read falls in the window; the newest is dated {newest}. "
            f"Pass --as-of (e.g. --as-of {newest[:10]}T23:59:59Z) to digest an older period."
        )
    lines.append("Time: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    names = [n for n in ("digest.md", "digest.html", "digest.xml") if (path.parent / n).exists()]
    lines.append("Digest: " + ", ".join(str(path.parent / n) for n in [*names, "digest.json"]))
    return "\n".join(lines)
