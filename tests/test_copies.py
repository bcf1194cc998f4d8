"""Same text or same story: the copy decision on constructed pairs, and the copy links it stores.

Each light edit of a wire text is a copy; separately written coverage of the same event is not;
consecutive editions of a recurring series (same template, new figures) are not. Then, against
the real database: whatever order copies are decided in, every one points at the earliest
published copy, and a copy stored in an earlier run is found.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from tasks.copies import compare, fingerprint
from tasks.copycheck import decide_copy
from tasks.feedparse import content_hash
from tests.conftest import truncate_all
from vectorstore import articles as store
from vectorstore import feeds as feed_store

WIRE = (
    "NORTHGATE (Beacon) — The state transport authority ordered the Halvorsen Bridge closed "
    "indefinitely on Thursday after inspectors found a 2.4-metre crack in a main girder, "
    "cutting the busiest route between Port Calder and the northern suburbs.\n\n"
    "About 48,000 vehicles cross the bridge on a typical weekday. Commuters were told to use the "
    "Eastway tunnel, where traffic backed up for nearly five kilometres during the evening "
    "rush.\n\n"
    "Transport Secretary Lena Okafor said engineers would need at least three weeks to assess "
    "whether the span could be repaired or had to be replaced. Early estimates put a repair at "
    "$27 million.\n\n"
    "The ferry operator Calder Sound Lines said it would add six sailings a day from Monday to "
    "take some of the load. City buses will run on diverted routes until further notice, the "
    "authority said in a statement."
)

EDITS = {
    "dateline": WIRE.replace("NORTHGATE (Beacon) —", "NORTHGATE, Nov. 19 (Beacon) —"),
    "first_words": WIRE.replace(
        "The state transport authority ordered the Halvorsen Bridge closed indefinitely on "
        "Thursday",
        "On Thursday the state's transport authority shut the Halvorsen Bridge indefinitely",
    ),
    "sentence_added": WIRE
    + "\n\nKestrel Bay commuters, who rely on the bridge for the coast road, face detours of "
    "up to forty minutes each way.",
    "sentence_dropped": WIRE.replace(" Early estimates put a repair at $27 million.", ""),
    "credit_line": WIRE + "\n\n(Reporting by Samuel Achterberg; Editing by Mara Lindqvist)",
    "dateline+credit_line": WIRE.replace("NORTHGATE (Beacon) —", "PORT CALDER —")
    + "\n\nReporting by Samuel Achterberg; editing by Mara Lindqvist.",
}

SEPARATE = (
    "Port Calder drivers woke on Friday to a city without its main bridge. The Halvorsen Bridge, "
    "which carries some 48,000 vehicles a day, was shut by state officials on Thursday once "
    "inspectors reported a 2.4-metre crack in one of its girders.\n\n"
    '"We will not reopen a structure we cannot vouch for," Transport Secretary Lena Okafor told '
    "reporters at the harbour. Her department expects the assessment to take three weeks.\n\n"
    "Calder Sound Lines is laying on extra ferries from Monday, and the council has asked "
    "employers to let staff work from home where they can. Traders on the north bank fear a "
    "long closure: a repair could cost $27 million, and a new span far more."
)

SERIES = [
    (
        "Tide times for Port Calder, {day} {date} December. High water at {h1} ({m1} m) and {h2} "
        "({m2} m); low water at {l1} ({n1} m) and {l2} ({n2} m). Sunrise {sr}, sunset {ss}. "
        "Mariners are reminded that predicted heights can differ from observed heights in strong "
        "winds. Tide predictions are provided by the Port Calder Harbour Office and are "
        "published every morning at six."
    ).format(**values)
    for values in (
        dict(day="Tuesday", date=8, h1="04:12", m1="4.1", h2="16:38", m2="4.3", l1="10:24",
             n1="0.9", l2="22:51", n2="1.1", sr="07:41", ss="16:22"),
        dict(day="Wednesday", date=9, h1="05:03", m1="4.0", h2="17:29", m2="4.2", l1="11:15",
             n1="1.0", l2="23:40", n2="1.2", sr="07:42", ss="16:21"),
    )
]  # fmt: skip

MARKET_WRAP = [
    (
        "Stocks ended {dir} on {day}. The benchmark Calder Composite closed at {close}, {chg} "
        "points, or {pct}%. The Calder Tech 40 {tdir} {tpct}% and the Calder 600 index of "
        "smaller companies {sdir} {spct}%. The yield on the 10-year government bond stood at "
        "{yld}%, and crude oil settled at ${oil} a barrel."
    ).format(**v)
    for v in (
        dict(dir="higher", day="Thursday", close="5,437.48", chg="up 16.80", pct="0.31",
             tdir="gained", tpct="0.94", sdir="gained", spct="0.22", yld="4.17", oil="70.95"),
        dict(dir="lower", day="Friday", close="5,402.11", chg="down 35.37", pct="0.65",
             tdir="lost", tpct="1.12", sdir="lost", spct="0.41", yld="4.21", oil="71.40"),
    )
]  # fmt: skip


@pytest.mark.parametrize("kind", sorted(EDITS))
def test_each_light_edit_of_a_wire_text_is_a_copy(kind: str) -> None:
    verdict = compare(WIRE, EDITS[kind])
    assert verdict.is_copy, verdict.reason
    assert compare(EDITS[kind], WIRE).is_copy  # the relation does not depend on the order


def test_separately_written_coverage_of_the_same_event_is_not_a_copy() -> None:
    verdict = compare(WIRE, SEPARATE)
    assert not verdict.is_copy
    assert verdict.containment < 0.2


@pytest.mark.parametrize("editions", [SERIES, MARKET_WRAP], ids=["tide-table", "market-wrap"])
def test_consecutive_editions_of_a_series_are_not_copies(editions: list[str]) -> None:
    verdict = compare(editions[0], editions[1])
    assert not verdict.is_copy, verdict.reason


def test_a_copy_shares_lsh_bands_with_its_original_and_other_texts_do_not() -> None:
    base = set(fingerprint(WIRE).bands)
    assert all(base & set(fingerprint(text).bands) for text in EDITS.values())
    assert not base & set(fingerprint(SEPARATE).bands)


# --- Stored copy links -----------------------------------------------------------------


def _store(conn, feed: int, n: int, body: str, published: datetime) -> int:  # noqa: ANN001
    row = store.NewArticle(
        guid=f"g{n}", url=f"https://o{n}.example/a", canonical_url=f"https://o{n}.example/a",
        title=f"Headline {n}", body=body, content_hash=content_hash(body),
        published=published, date_source="published",
    )  # fmt: skip
    return store.upsert_articles(conn, feed, [row])[0]


def _links(db, ids: list[int]) -> dict[int, int | None]:  # noqa: ANN001
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT id, duplicate_of FROM articles WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    return {int(r[0]): r[1] for r in rows}


def test_copies_point_at_the_earliest_published_copy_whatever_the_order(db) -> None:
    t0 = datetime(2026, 11, 19, 12, tzinfo=UTC)
    bodies = [EDITS["credit_line"], WIRE, EDITS["dateline"], EDITS["sentence_added"]]
    hours = [3, 0, 1, 2]  # WIRE is the earliest published
    for order in itertools.islice(itertools.permutations(range(4)), 0, 24, 5):
        with db.connection() as conn:
            truncate_all(conn)
            feed = feed_store.upsert_feed(conn, "https://feed.example/rss")
            ids = [
                _store(conn, feed, i, bodies[i], t0 + timedelta(hours=hours[i])) for i in range(4)
            ]
        for i in order:
            decide_copy(ids[i])
        original = ids[1]
        assert _links(db, ids) == {
            ids[0]: original, ids[1]: None, ids[2]: original, ids[3]: original
        }, order  # fmt: skip


def test_a_copy_of_an_article_stored_in_an_earlier_run_is_caught(db) -> None:
    t0 = datetime(2026, 11, 18, 9, tzinfo=UTC)
    with db.connection() as conn:
        feed = feed_store.upsert_feed(conn, "https://feed.example/rss")
        first = _store(conn, feed, 1, WIRE, t0)
    assert decide_copy(first)["copy_of"] is None
    with db.connection() as conn:  # a later run reads another outlet's copy
        later = _store(conn, feed, 2, EDITS["sentence_dropped"], t0 + timedelta(days=1))
        separate = _store(conn, feed, 3, SEPARATE, t0 + timedelta(days=1))
    result = decide_copy(later)
    assert result["copy_of"] == first and not result["exact"]
    assert decide_copy(separate)["copy_of"] is None


def test_the_same_text_under_another_headline_is_an_exact_duplicate(db) -> None:
    t0 = datetime(2026, 11, 18, 9, tzinfo=UTC)
    with db.connection() as conn:
        feed = feed_store.upsert_feed(conn, "https://feed.example/rss")
        first = _store(conn, feed, 1, WIRE, t0)
        again = _store(conn, feed, 2, WIRE, t0 + timedelta(hours=2))
    decide_copy(first)
    result = decide_copy(again)
    assert result == {**result, "copy_of": first, "exact": True}


def test_a_copy_told_its_original_keeps_the_link_re_pointed_since(db) -> None:
    """A copy decided before the earliest copy arrived is re-pointed to it; recording the
    copy's outcome afterwards (with the link it was told) must not undo that."""
    t0 = datetime(2026, 11, 19, 12, tzinfo=UTC)
    with db.connection() as conn:
        feed = feed_store.upsert_feed(conn, "https://feed.example/rss")
        wire = _store(conn, feed, 1, WIRE, t0)
        early_copy = _store(conn, feed, 2, EDITS["dateline"], t0 + timedelta(hours=1))
        late_copy = _store(conn, feed, 3, EDITS["credit_line"], t0 + timedelta(hours=2))
    assert decide_copy(early_copy)["copy_of"] is None  # the wire's feed is read later
    told = decide_copy(late_copy)["copy_of"]
    assert told == early_copy
    decide_copy(wire)
    with db.connection() as conn:
        store.set_article_outcome(
            conn, late_copy, state="near_duplicate", duplicate_of=told, content_hash=None
        )
        store.set_article_outcome(conn, early_copy, state="processed", content_hash=None)
    assert _links(db, [wire, early_copy, late_copy]) == {
        wire: None, early_copy: wire, late_copy: wire
    }  # fmt: skip


PUMP_PRICES = [
    (
        "Pump prices across the county this morning: unleaded averages {u} a litre, {trend} on "
        "yesterday, and diesel {d}. The cheapest unleaded we found was at the {cheap}, at {c} a "
        "litre; the dearest was at the ring-road services, where drivers paid {x}. Crude oil "
        "closed last night at ${oil} a barrel. Prices are collected at 7 a.m. from 140 "
        "forecourts and published every weekday morning. Motorists are reminded that prices at "
        "motorway services are usually well above the county average, and that supermarket "
        "forecourts tend to follow wholesale costs within two or three days. Readers can send "
        "us the prices they see through the form on our website, and we check every report "
        "before it is added to the survey."
    ).format(**v)
    for v in (
        dict(u="1.595", trend="up slightly", d="1.656", cheap="superstore on Mill Lane", c="1.554",
             x="1.662", oil="70.59"),
        dict(u="1.589", trend="unchanged", d="1.656", cheap="co-op garage in Brook End", c="1.548",
             x="1.662", oil="70.59"),
    )
]  # fmt: skip

FAIR_DIARY = [
    (
        "Fair diary, {day}. If you have only half an hour at the Guildhall this week, our pick "
        "of the day is the stall run by {maker} by the east doors. {first} makes {craft} in a "
        "converted barn in {town} and says the winter fair brings in nearly half a year's sales. "
        "Organisers counted roughly {n} visitors, and the fair runs until Sunday. Doors open at "
        "ten each morning and close at six, with late opening on Friday until nine. Entry is free, "
        "the cafe on the mezzanine serves soup and cakes all day, and the organisers ask "
        "visitors to bring their own bags because the stallholders have agreed to go without "
        "plastic this year."
    ).format(**v)
    for v in (
        dict(day="Wednesday", maker="Hester Quill", first="Hester", craft="hand-bound notebooks",
             town="Ashcombe", n="3,100"),
        dict(day="Thursday", maker="Jonas Everleigh", first="Jonas", craft="turned wooden bowls",
             town="Kestrel Heights", n="2,850"),
    )
]  # fmt: skip


@pytest.mark.parametrize(
    "editions", [PUMP_PRICES, FAIR_DIARY], ids=["prices-mostly-unchanged", "diary-new-names"]
)
def test_editions_that_keep_most_figures_or_swap_names_are_not_copies(editions: list[str]) -> None:
    verdict = compare(editions[0], editions[1])
    assert verdict.containment >= 0.5  # they look alike ...
    assert not verdict.is_copy, verdict.reason  # ... but values were swapped slot by slot
    assert "swapped" in verdict.reason or "figures" in verdict.reason


def test_an_edition_that_keeps_most_figures_is_told_by_the_values_it_swaps() -> None:
    verdict = compare(PUMP_PRICES[0], PUMP_PRICES[1])
    assert verdict.figure_agreement is not None and verdict.figure_agreement >= 0.6
    assert not verdict.is_copy and "values swapped" in verdict.reason
