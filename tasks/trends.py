"""Trend scoring: how surprising a story's coverage in the window is against its baseline.

A story's count is its *independent texts*: the outlets that wrote their own text about it in
the window. Extra carriers of one text (a wire story republished by five outlets, exact or
lightly edited) weigh nothing: syndication measures distribution deals, not five newsrooms'
attention, so a story carried everywhere from one wire copy is one text. The burst is the
Poisson surprise of that count against the rate the baseline predicts for the same topic;
novelty is how unlike any baseline article the story is. A story trends when enough outlets
wrote about it and the burst is unlikely (a steady daily topic never is: the baseline predicts
it), and either it is new or the burst is so large that earlier coverage does not explain it (a
developing story: a rumour last week, everyone today). Plain functions over counts, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class TrendParams:
    """Grouping and trend thresholds (the daily graph passes its RunContext values)."""

    story_threshold: float = 0.39
    anchor_weight: float = 1.5
    baseline_days: float = 7.0
    baseline_match: float = 0.35
    trend_min_sources: int = 3
    trend_min_burst: float = 2.0
    trend_min_novelty: float = 0.40
    trend_developing_burst: float = 4.0

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrendParams:
        """Parameters from a task argument; an unknown name is an error, not ignored."""
        values = dict(values or {})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown trend parameters: {sorted(unknown)}")
        return cls(**values)


PRIOR_SOURCES = 0.5  # pseudo-count of baseline sources: an unseen topic is not impossible


# --- Trends ----------------------------------------------------------------------------


def poisson_surprise(observed: int, expected: float) -> float:
    """-log10 P(X >= observed) for X ~ Poisson(expected): how unlikely today's count is."""
    if observed <= 0:
        return 0.0
    lam = max(float(expected), 1e-9)
    log_terms, k = [], observed
    while True:
        log_terms.append(-lam + k * math.log(lam) - math.lgamma(k + 1))
        if k > lam and log_terms[-1] < log_terms[0] - 40:
            break
        k += 1
    top = max(log_terms)
    log_p = top + math.log(sum(math.exp(t - top) for t in log_terms))
    return max(0.0, -log_p / math.log(10))


def expected_sources(matched: list[tuple[str, int]], slices: float) -> float:
    """Sources per window the baseline predicts: distinct (source, slice) pairs among the
    baseline articles on the same topic, averaged over the baseline's window-long slices."""
    return (len(set(matched)) + PRIOR_SOURCES) / max(slices, 1.0)


def trend_score(sources: int, expected: float, novelty: float) -> tuple[float, float]:
    """(score, burst): burst is the Poisson surprise of today's independent sources; the score
    weighs it by novelty between one half and one, so a story seen before ranks below a new one
    of the same size, yet a large burst on a developing story outranks a small new one."""
    burst = poisson_surprise(sources, expected)
    return burst * (0.5 + 0.5 * max(0.0, min(1.0, novelty))), burst


def is_trending(sources: int, burst: float, novelty: float, params: TrendParams) -> bool:
    """Enough outlets, an unlikely volume for the topic, and new (or a burst so large that the
    earlier coverage does not explain it: a developing story)."""
    return (
        sources >= params.trend_min_sources
        and burst >= params.trend_min_burst
        and (novelty >= params.trend_min_novelty or burst >= params.trend_developing_burst)
    )


def timeline(
    window_start: datetime,
    window_hours: float,
    slices: int,
    baseline_texts: list[datetime],
    window_texts: int,
) -> list[dict[str, Any]]:
    """Independent texts per window-long slice over the baseline, oldest first, then the window:
    what a reader sees as the reason a story trends."""
    width = timedelta(hours=window_hours)
    counts = [0] * slices
    for placed in baseline_texts:
        k = int((window_start - placed) / width)
        if 0 <= k < slices:
            counts[slices - 1 - k] += 1
    out = []
    for i, n in enumerate(counts):
        start = window_start - width * (slices - i)
        out.append({"start": _iso(start), "end": _iso(start + width), "texts": n,
                    "window": False})  # fmt: skip
    out.append({"start": _iso(window_start), "end": _iso(window_start + width),
                "texts": window_texts, "window": True})  # fmt: skip
    return out


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
