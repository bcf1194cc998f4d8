"""Same text or same story, through the whole pipeline on a small local corpus.

A wire story republished by two outlets (a credit line added, a dateline changed) is one text:
one item in digest.md and digest.html, "also in" the two carriers, their headlines never listed
as items of their own, and the copies carry the kept article's summary. A developing story (a
rumour in the baseline, then five outlets' own texts in the window) trends. Every distinct
article of the window is summarized.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from graphs.daily import graph
from graphs.state import RunContext

AS_OF = datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC)

WIRE_TEXT = (
    "ASHBY CROSS (Beacon) — Fire crews spent most of Thursday containing a blaze at the Lindqvist "
    "paper mill on the edge of Ashby Cross, where a storage hall holding about 4,000 tonnes of "
    "recycled card caught fire shortly after dawn.\n\n"
    "No one was hurt. The county fire service said 60 firefighters and 14 engines were at the site "
    "at the height of the fire, and residents of the Millbrook estate were told to keep their "
    "windows closed because of the smoke.\n\n"
    "The mill's owner, Nordvik Packaging, said production lines were undamaged and that it "
    "expected to restart the plant on Monday. Investigators have not yet said how the fire began."
)
COPIES = {
    "outlet-one": WIRE_TEXT + "\n\n(Reporting by Tove Marsh; Editing by Ian Creed)",
    "outlet-two": WIRE_TEXT.replace("ASHBY CROSS (Beacon) —", "ASHBY CROSS, Nov. 26 —"),
}

RUMOUR = (
    "Harlow Motors is said to be weighing a site near Oakhurst for a large battery plant, "
    "according to two people familiar with the talks. The carmaker has looked at land off "
    "Coldbrook Road, they said, and a decision could come before Christmas. Harlow Motors "
    "declined to comment on what it called market speculation."
)
DEVELOPING = {
    "wire": "Harlow Motors confirmed on Thursday that it will build a $2.3 billion battery plant "
    "at Coldbrook Road in Oakhurst, creating about 1,800 jobs once production starts in 2029. "
    "The carmaker said the factory would supply cells for its next two electric models.",
    "outlet-one": "Oakhurst has won the race for the Harlow Motors battery factory. Council "
    "leader Amira Voss called the $2.3 billion investment the biggest in the county's history "
    "and said the 1,800 promised jobs would change the prospects of a generation of young people "
    "who had left to find work.",
    "outlet-two": "Shares in Harlow Motors rose 4 percent after the company picked Coldbrook "
    "Road, Oakhurst, for its battery plant. Analysts said the $2.3 billion project, with state "
    "incentives of $240 million, should cut the cost of its cells by a fifth by the end of the "
    "decade.",
    "outlet-three": "Residents near Coldbrook Road gave a cautious welcome to the Harlow Motors "
    "plan. Farmers worry about traffic on the narrow lanes around Oakhurst, while the 1,800 jobs "
    "were welcomed at a packed meeting in the village hall on Thursday evening.",
    "outlet-four": "What the Harlow Motors battery plant means for Oakhurst: construction of the "
    "$2.3 billion site begins next spring, the first cells should roll off the line in 2029, and "
    "the company expects to hire 1,800 people, most of them from within thirty miles.",
}
MINOR = (
    "The Kestrel Bay lifeboat was called out twice on Thursday, first to a yacht with a fouled "
    "propeller off Gull Point and later to a walker cut off by the tide below the cliffs. Both "
    "rescues ended safely, the crew said, and the walker was checked by paramedics on the beach."
)


def _feed(folder: Path, name: str, items: list[tuple[str, str, str, datetime]]) -> Path:
    entries = "".join(
        f"<item><title>{escape(title)}</title><link>https://{name}.example/{slug}</link>"
        f"<guid>{name}-{slug}</guid><pubDate>{format_datetime(when)}</pubDate>"
        f"<description>{escape(text)}</description></item>"
        for slug, title, text, when in items
    )
    path = folder / f"{name}.xml"
    path.write_text(
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name.title()}</title>'
        f"<link>https://{name}.example/</link>{entries}</channel></rss>",
        encoding="utf-8",
    )
    return path


def _corpus(folder: Path) -> Path:
    t = AS_OF - timedelta(hours=12)
    feeds = {
        "wire": [
            ("mill-fire", "Fire at Ashby Cross paper mill", WIRE_TEXT, t),
            ("harlow-plant", "Harlow Motors picks Oakhurst", DEVELOPING["wire"], t),
        ],
        "outlet-one": [
            ("blaze", "Blaze guts storage hall at Lindqvist mill", COPIES["outlet-one"],
             t + timedelta(hours=1)),
            ("oakhurst-wins", "Oakhurst wins battery factory", DEVELOPING["outlet-one"],
             t + timedelta(hours=2)),
        ],
        "outlet-two": [
            ("mill", "Smoke warning as paper mill burns", COPIES["outlet-two"],
             t + timedelta(hours=2)),
            ("harlow-shares", "Harlow shares rise on plant choice", DEVELOPING["outlet-two"],
             t + timedelta(hours=3)),
        ],
        "outlet-three": [
            ("rumour", "Harlow eyes Oakhurst for battery plant", RUMOUR, t - timedelta(days=4)),
            ("residents", "Cautious welcome near Coldbrook Road", DEVELOPING["outlet-three"],
             t + timedelta(hours=4)),
            ("lifeboat", "Lifeboat busy on two call-outs", MINOR, t + timedelta(hours=5)),
        ],
        "outlet-four": [
            ("explainer", "What the battery plant means", DEVELOPING["outlet-four"],
             t + timedelta(hours=5)),
        ],
    }  # fmt: skip
    listing = folder / "feeds.txt"
    listing.write_text("\n".join(str(_feed(folder, n, items)) for n, items in feeds.items()))
    return listing


@pytest.mark.slow
def test_copies_collapse_a_developing_story_trends_and_every_text_is_summarized(
    db, fleet_worker, tmp_path: Path
) -> None:
    listing = _corpus(tmp_path)
    out = tmp_path / "out"
    inputs = {"run_id": "run-copies", "feeds_file": str(listing), "as_of": AS_OF.isoformat(),
              "window_hours": 24}  # fmt: skip
    asyncio.run(graph.ainvoke(inputs, context=RunContext(out_dir=str(out), prefer_llm=False)))
    digest = json.loads((out / "digest.json").read_text())
    by_url = {a["canonical_url"]: a for a in digest["articles"]}

    kept = "https://wire.example/mill-fire"
    copies = ["https://outlet-one.example/blaze", "https://outlet-two.example/mill"]
    assert by_url[kept]["status"] == "new" and by_url[kept]["summary"]
    for url in copies:
        assert by_url[url]["status"] == "near_duplicate", url
        assert by_url[url]["duplicate_of"] == kept
        assert by_url[url]["summary"] == by_url[kept]["summary"]  # the kept article's

    distinct = [a for a in digest["articles"] if a["in_window"] and not a["duplicate_of"]]
    assert len(distinct) == 7 and all(a["summary"] for a in distinct)

    (fire,) = [s for s in digest["stories"] if kept in s["article_urls"]]
    assert set(copies) <= set(fire["article_urls"]) and fire["independent_texts"] == 1
    assert not fire["is_trending"]  # one text carried three times is one source
    (plant,) = [
        s for s in digest["stories"] if "https://wire.example/harlow-plant" in s["article_urls"]
    ]
    assert plant["is_trending"] and plant["independent_texts"] == 5
    assert plant["signals"]["novelty"] < 0.4  # the rumour: not new, yet the burst makes it trend

    md = (out / "digest.md").read_text()
    html = (out / "digest.html").read_text()
    for page in (md, html):
        assert "also in" in page
        assert "Blaze guts storage hall" not in page and "Smoke warning as paper mill" not in page
        assert page.count("Fire at Ashby Cross paper mill") == 1
