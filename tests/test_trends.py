"""Stories and trends as plain functions: constructed vectors, counts and texts, no services."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from graphs.state import RunContext
from tasks.analyze import analyze_window
from tasks.stories import anchor_terms, average_link, story_id
from tasks.trends import (
    TrendParams,
    expected_sources,
    is_trending,
    poisson_surprise,
    trend_score,
)

WINDOW_START = datetime(2026, 11, 19, 7, tzinfo=UTC)
PARAMS = TrendParams()
DIMS = 16
RNG = np.random.default_rng(7)
TOPICS = {name: RNG.normal(size=DIMS) for name in ("quake", "wrap", "bakery", "fair", "bridge")}
NEWS = {  # what articles on each topic say: as in real news, they share names and figures
    "quake": "A quake of magnitude 5.8 shook Marrowfield, said seismologist Ada Lindqvist.",
    "wrap": "Stocks rose as the Calder Composite gained on Tidewater's daily close.",
    "bakery": "The Rye Hollow bakery in Lindenport baked 800 loaves, owner Tove Mars said.",
    "fair": "The Greenfield County fair in Oakhurst drew 12,000 people, said organiser Lise Brun.",
    "bridge": "Mayor Ines Okafor closed the Halvorsen Bridge after a 2.4-metre crack was found.",
}


def vector(topic: str, noise: float = 0.15) -> np.ndarray:
    v = TOPICS[topic] / np.linalg.norm(TOPICS[topic]) + RNG.normal(scale=noise, size=DIMS)
    return (v / np.linalg.norm(v)).astype(np.float32)


def article(
    aid: int, topic: str, feed: str, hours_before_end: float, *, title: str = "", body: str = ""
) -> dict:
    return {
        "id": aid,
        "title": title or f"{topic} update",
        "text": body or NEWS[topic],
        "url": f"https://{feed}.example/{aid}",
        "canonical_url": f"https://{feed}.example/{aid}",
        "feed_url": f"https://{feed}.example/feed",
        "feed_title": feed,
        "language": "en",
        "placed_at": WINDOW_START + timedelta(hours=24 - hours_before_end),
        "duplicate_of": None,
        "summary": f"Summary {aid}.",
        "embedding": vector(topic),
    }


def steady_baseline(topic: str, feeds: list[str], first_id: int, days: int = 7) -> list[dict]:
    """One article per feed per day for `days` days before the window."""
    out, aid = [], first_id
    for day in range(days):
        for feed in feeds:
            out.append(article(aid, topic, feed, 24 + 24 * day + 3))
            aid += 1
    return out


def by_topic(stories: list[dict], articles: list[dict]) -> dict[str, dict]:
    topic_of = {a["id"]: a["title"].split()[0] for a in articles}
    return {topic_of[s["article_ids"][0]]: s for s in stories}


def test_a_burst_of_new_coverage_across_sources_trends() -> None:
    expected = expected_sources([], slices=7)
    score, burst = trend_score(5, expected, novelty=0.8)
    assert burst > PARAMS.trend_min_burst
    assert is_trending(5, burst, 0.8, PARAMS)
    assert score > 0


def test_a_steady_daily_topic_does_not_trend() -> None:
    # Two outlets write the market wrap every day of the baseline; today both write it again.
    matched = [(feed, day) for day in range(7) for feed in ("tidewater", "beacon")]
    expected = expected_sources(matched, slices=7)
    assert expected == pytest.approx(2.07, abs=0.01)
    _, burst = trend_score(2, expected, novelty=0.9)
    assert burst < PARAMS.trend_min_burst
    assert not is_trending(2, burst, 0.9, PARAMS)
    # Even a third outlet joining in is what the baseline predicts, not a burst.
    _, burst3 = trend_score(3, expected, novelty=0.9)
    assert not is_trending(3, burst3, 0.9, PARAMS)


def test_a_story_with_one_source_never_outranks_one_with_many() -> None:
    for expected in (0.07, 0.5, 1.5):
        for novelty in (0.3, 0.7, 1.0):
            one, _ = trend_score(1, expected, novelty)
            many, _ = trend_score(4, expected, novelty)
            assert many > one


def test_poisson_surprise_grows_with_the_count_and_shrinks_with_the_rate() -> None:
    assert poisson_surprise(0, 1.0) == 0.0
    assert poisson_surprise(1, 1.0) == pytest.approx(-np.log10(1 - np.exp(-1.0)))
    assert poisson_surprise(5, 0.1) > poisson_surprise(3, 0.1) > poisson_surprise(3, 2.0)
    assert np.isfinite(poisson_surprise(400, 0.01))


def test_window_scoring_flags_the_burst_and_not_the_steady_topic_or_the_single_source() -> None:
    window = [article(i, "quake", f"outlet{i}", 5 + i) for i in range(1, 6)]
    window += [article(10 + i, "wrap", feed, 4) for i, feed in enumerate(("tidewater", "beacon"))]
    window += [article(20 + i, "bakery", "crumbs", 2 + i) for i in range(4)]  # one source
    baseline = steady_baseline("wrap", ["tidewater", "beacon"], 100)
    stories = analyze_window(
        window, baseline, window_start=WINDOW_START, window_hours=24, params=PARAMS, dims=DIMS
    )
    got = by_topic(stories, window)
    assert set(got) == {"quake", "wrap", "bakery"}
    assert got["quake"]["is_trending"]
    assert not got["wrap"]["is_trending"]
    assert got["wrap"]["signals"]["expected_sources"] > 1.5
    assert got["wrap"]["signals"]["novelty"] < PARAMS.trend_min_novelty
    assert not got["bakery"]["is_trending"]
    assert got["bakery"]["signals"]["sources"] == 1
    assert got["quake"]["trend_score"] > got["bakery"]["trend_score"]
    assert stories[0] is got["quake"]  # trending first
    assert sorted(i for s in stories for i in s["article_ids"]) == sorted(a["id"] for a in window)


def test_a_topic_already_covered_in_the_baseline_is_not_new() -> None:
    window = [article(i, "fair", f"outlet{i}", 3) for i in range(1, 5)]
    baseline = [article(100, "fair", "outlet1", 60), article(101, "fair", "outlet2", 90)]
    stories = analyze_window(
        window, baseline, window_start=WINDOW_START, window_hours=24, params=PARAMS, dims=DIMS
    )
    assert len(stories) == 1
    assert stories[0]["signals"]["novelty"] < PARAMS.trend_min_novelty
    assert not stories[0]["is_trending"]


def test_duplicates_join_their_original_and_story_ids_do_not_depend_on_order() -> None:
    window = [article(i, "quake", f"outlet{i}", 10 - i) for i in range(1, 4)]
    window.append(article(4, "bakery", "crumbs", 2))
    window[3]["duplicate_of"] = 2  # a copy whose text says something else entirely
    kwargs = dict(window_start=WINDOW_START, window_hours=24, params=PARAMS, dims=DIMS)
    stories = analyze_window(window, [], **kwargs)
    assert len(stories) == 1
    assert sorted(stories[0]["article_ids"]) == [1, 2, 3, 4]
    earliest = min(window, key=lambda a: a["placed_at"])
    assert stories[0]["id"] == story_id(earliest["canonical_url"])
    again = analyze_window(list(reversed(window)), [], **kwargs)
    assert [s["id"] for s in again] == [s["id"] for s in stories]


def test_shared_names_and_figures_join_articles_whose_vectors_disagree() -> None:
    en = article(
        1, "bridge", "ledger", 5, title="Halvorsen Bridge shut after crack found",
        body="Mayor Ines Okafor closed the Halvorsen Bridge on Thursday after inspectors from "
        "the Transportation Department found a 2.4-metre crack in a girder. The 1971 bridge "
        "carries 41,000 vehicles a day. Secretary Daniel Reyes-Whitlock pledged $27 million; "
        "the Eastbank ferry adds sailings and the Lisle Street tunnel opens both ways.",
    )  # fmt: skip
    es = article(
        2, "quake", "voz", 4, title="Cierran el puente Halvorsen por una grieta",
        body="La alcaldesa Ines Okafor cerró el puente Halvorsen el jueves tras hallar una "
        "grieta de 2,4 metros en una viga. El puente de 1971 lleva 41.000 vehículos al día. "
        "El secretario Daniel Reyes-Whitlock promete 27 millones; el ferry de Eastbank suma "
        "viajes y el túnel de Lisle Street abre en ambos sentidos.",
    )  # fmt: skip
    es["language"] = "es"
    # An English-only model sees the Spanish text as barely related (cosine 0.2).
    other = RNG.normal(size=DIMS)
    other -= (other @ en["embedding"]) * en["embedding"]
    mixed = 0.2 * en["embedding"] + 0.98 * other / np.linalg.norm(other)
    es["embedding"] = (mixed / np.linalg.norm(mixed)).astype(np.float32)
    assert float(es["embedding"] @ en["embedding"]) == pytest.approx(0.2, abs=0.01)
    window = [en, es, article(3, "bakery", "crumbs", 3), article(4, "fair", "courier", 2)]
    kwargs = dict(window_start=WINDOW_START, window_hours=24, dims=DIMS)
    stories = analyze_window(window, [], params=PARAMS, **kwargs)
    assert sorted(sorted(s["article_ids"]) for s in stories) == [[1, 2], [3], [4]]
    vectors_only = analyze_window(window, [], params=TrendParams(anchor_weight=0.0), **kwargs)
    assert len(vectors_only) == 4


def test_anchors_are_names_and_figures_in_any_language() -> None:
    en = anchor_terms("Quake shakes town", "The quake hit Marrowfield at 5.8 and 3,200 homes.")
    es = anchor_terms("Sismo sacude", "El sismo sacudió Marrowfield con 5,8 y 3.200 casas.")
    assert {"marrowfield", "#58", "#3200"} <= set(en) & set(es)
    assert "the" not in en and "quake" not in en  # sentence openers and common words are not names


def test_average_link_keeps_must_link_groups_and_places_every_item_once() -> None:
    sim = np.array(
        [[1.0, 0.9, 0.1, 0.0], [0.9, 1.0, 0.1, 0.0], [0.1, 0.1, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )
    assert average_link(sim, 0.5) == [[0, 1], [2], [3]]
    assert average_link(sim, 0.5, must_link=[[2, 3]]) == [[0, 1], [2, 3]]
    assert average_link(sim, 0.95) == [[0], [1], [2], [3]]


def test_run_context_defaults_match_the_task_defaults() -> None:
    ctx = RunContext()
    for f in fields(TrendParams):
        assert getattr(ctx, f.name) == f.default, f.name
    with pytest.raises(ValueError, match="unknown trend parameters"):
        TrendParams.from_dict({"story_treshold": 0.5})
