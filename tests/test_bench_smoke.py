"""The benchmarks' shared pieces, checked in seconds (the benchmarks themselves take minutes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench import _harness as h
from bench.vectors import clustered_vectors
from tasks.feedlist import read_feed_list
from tasks.feedparse import parse_feed

AS_OF = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)


def test_generated_articles_are_distinct_news_items_within_the_window() -> None:
    items = h.make_articles(120, as_of=AS_OF)
    assert len({i["title"] for i in items}) == 120
    assert len({i["link"] for i in items}) == 120
    assert len({h.article_text(i) for i in items}) == 120
    assert all(55 <= i["words"] <= 220 for i in items)
    assert all(AS_OF - timedelta(hours=24) < i["published"] < AS_OF for i in items)


def test_generated_feeds_parse_into_every_article(tmp_path: Path) -> None:
    items = h.make_articles(60, as_of=AS_OF)
    listing = h.write_feeds(tmp_path, items, per_feed=25)
    sources = read_feed_list(listing)
    assert len(sources) == 3
    entries = []
    for src in sources:
        parsed = parse_feed(Path(src.location).read_bytes(), src.location, now=AS_OF)
        assert parsed.dropped == []
        entries += parsed.entries
    assert {e.title for e in entries} == {i["title"] for i in items}


def test_clustered_vectors_are_unit_length_with_planted_near_duplicates() -> None:
    x, dups = clustered_vectors(4000)
    assert x.shape == (4000, 384)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    sims = x[dups[:20]] @ x.T
    sims[np.arange(20), dups[:20]] = -1.0  # not itself
    assert (sims.max(axis=1) > 0.9).all()


def test_a_benchmark_prints_its_table_then_one_json_line_last(capsys) -> None:  # noqa: ANN001
    def body(services: h.Services) -> tuple[str, dict]:
        assert services.tmp.is_dir()
        return h.table([("a", 1.5)], ("name", "seconds")), {"bench": "smoke", "x": 1}

    assert h.run_benchmark("smoke", body) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == {"bench": "smoke", "x": 1}
    assert lines[0].startswith("name")


def test_fulltext_scores_words_against_the_gold_and_reads_every_labelled_page() -> None:
    from bench import fulltext

    pages = [("p", "<html><body><p>Alpha beta gamma.</p></body></html>", "alpha beta gamma delta")]
    exact = fulltext.score(pages, lambda html: "Alpha beta gamma delta")
    assert (exact["precision"], exact["recall"], exact["f1"], exact["boilerplate"]) == (1, 1, 1, 0)
    noisy = fulltext.score(pages, lambda html: "alpha beta cookies cookies")
    assert (noisy["precision"], noisy["recall"], noisy["boilerplate"]) == (0.5, 0.5, 0.5)
    assert fulltext.score(pages, lambda html: None)["f1"] == 0.0
    assert fulltext.visible_text(pages[0][1]) == "Alpha beta gamma."
    tune = fulltext.load_set("tune")
    assert len(tune) >= 12 and all(gold.strip() for _, _, gold in tune)
