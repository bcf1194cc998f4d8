"""Specification of tasks.feedparse: the sample feeds, clean text, links, dates, hostile input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import FeedRefused, PermanentError
from tasks.feedparse import (
    Entry,
    ParsedFeed,
    canonicalize_url,
    content_hash,
    html_to_text,
    parse_feed,
)

FEEDS = Path(__file__).resolve().parent.parent / "examples" / "feeds"
FEED_URLS = {
    "tech-daily.xml": "https://techdaily.example/feed.xml",
    "world-wire.atom": "https://worldwire.example/feeds/all.atom",
    "science-notes.rdf": "https://sciencenotes.example/rss",
    "noticias.xml": "https://noticias.example/rss",
    "markets-brief.xml": "https://marketsbrief.example/rss.xml",
}
EXPECTED_COUNTS = {
    "tech-daily.xml": 9,
    "world-wire.atom": 9,
    "science-notes.rdf": 7,
    "noticias.xml": 6,
    "markets-brief.xml": 6,
}
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
URL = "https://hostile.example/feed.xml"


def sample(name: str) -> ParsedFeed:
    return parse_feed((FEEDS / name).read_bytes(), FEED_URLS[name], now=NOW)


def entry_by_title(feed: ParsedFeed, start: str) -> Entry:
    matches = [e for e in feed.entries if e.title.startswith(start)]
    assert len(matches) == 1, [e.title for e in feed.entries]
    return matches[0]


def rss(items: str, prolog: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{prolog}<rss version="2.0"><channel>'
        f"<title>Hostile</title><link>https://hostile.example/</link>{items}</channel></rss>"
    ).encode()


def item(
    title: str = "t", link: str = "https://hostile.example/a", body: str = "b", date: str = ""
) -> str:
    pub = f"<pubDate>{date}</pubDate>" if date else ""
    return (
        f"<item><title>{title}</title><link>{link}</link>{pub}"
        f"<description>{body}</description></item>"
    )


# --- sample feeds -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_each_sample_feed_parses_cleanly_with_expected_entry_count(name: str) -> None:
    feed = sample(name)
    assert len(feed.entries) == EXPECTED_COUNTS[name]
    assert feed.dropped == []
    assert feed.bozo_error is None
    assert feed.title
    for e in feed.entries:
        assert e.url.startswith("https://") and ".example/" in e.url
        assert e.title and e.text and "<" not in e.title
        assert len(e.content_hash) == 64


def test_feed_list_and_opml_name_every_sample_feed() -> None:
    lines = (FEEDS / "feeds.txt").read_text().splitlines()
    listed = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    assert sorted(listed) == sorted(EXPECTED_COUNTS)
    opml = (FEEDS / "feeds.opml").read_text()
    for name in EXPECTED_COUNTS:
        assert f'xmlUrl="{name}"' in opml


def test_sample_dates_fall_in_the_window_with_most_on_the_26th() -> None:
    dates = [e.published for n in EXPECTED_COUNTS for e in sample(n).entries if e.published]
    low = datetime(2026, 11, 19, tzinfo=UTC)
    high = datetime(2026, 11, 26, 23, tzinfo=UTC)
    assert all(low <= d <= high for d in dates)
    assert sum(d.date() == datetime(2026, 11, 26).date() for d in dates) * 2 >= len(dates)


def test_syndicated_story_hashes_identically_across_three_feeds() -> None:
    raw_tech = (FEEDS / "tech-daily.xml").read_text()
    raw_markets = (FEEDS / "markets-brief.xml").read_text()
    assert "<p>Meridian Semiconductor will build" in raw_tech  # wrapped in <p>
    assert "<![CDATA[Meridian Semiconductor will build" in raw_markets  # bare
    copies = [
        entry_by_title(sample(name), "Meridian Semiconductor picks Tucson")
        for name in ("tech-daily.xml", "world-wire.atom", "markets-brief.xml")
    ]
    assert len({e.content_hash for e in copies}) == 1
    assert len({e.canonical_url for e in copies}) == 3
    assert {e.text for e in copies} == {copies[0].text}


def test_near_duplicate_rewrite_hashes_differently() -> None:
    wire = entry_by_title(sample("world-wire.atom"), "Valparaíso dockworkers")
    brief = entry_by_title(sample("markets-brief.xml"), "Chilean port strike ends")
    assert wire.content_hash != brief.content_hash
    assert "6.5 percent" in wire.text and "6.5 percent" in brief.text


def test_script_text_and_onclick_handler_are_gone() -> None:
    e = entry_by_title(sample("tech-daily.xml"), "Browser makers agree")
    for banned in ("alert", "script", "onclick", "steal", "cookie", "<", ">"):
        assert banned not in e.text
    assert "Read our explainer." in e.text


def test_escaped_markup_and_character_entities_become_plain_text() -> None:
    e = entry_by_title(sample("tech-daily.xml"), "Lumenfold raises")
    assert e.text.startswith("Lumenfold, a Rotterdam start-up")
    assert "Northgate Ventures & Halden Capital" in e.text
    assert "company\u2019s optical links" in e.text
    assert "&amp;" not in e.text and "<b>" not in e.text


def test_paragraphs_are_separated_by_one_blank_line() -> None:
    e = entry_by_title(sample("tech-daily.xml"), "Meridian")
    paragraphs = e.text.split("\n\n")
    assert len(paragraphs) == 4
    assert all(p == " ".join(p.split()) for p in paragraphs)


def test_item_without_any_date_has_no_published_date() -> None:
    e = entry_by_title(sample("tech-daily.xml"), "Weekend reading")
    assert (e.published, e.date_source) == (None, "none")


def test_item_with_invalid_date_string_has_no_published_date() -> None:
    e = entry_by_title(sample("tech-daily.xml"), "Orbital Relay delays")
    assert (e.published, e.date_source) == (None, "none")


def test_dates_are_converted_to_utc() -> None:
    e = entry_by_title(sample("tech-daily.xml"), "Lumenfold raises")  # 16:30 -0500
    assert e.published == datetime(2026, 11, 25, 21, 30, tzinfo=UTC)
    assert e.date_source == "published"


def test_atom_entry_with_only_updated_uses_the_updated_date() -> None:
    e = entry_by_title(sample("world-wire.atom"), "Baltic states")  # 10:00+01:00
    assert e.published == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert e.date_source == "updated"


def test_relative_rss_link_resolves_against_the_feed_url() -> None:
    e = entry_by_title(sample("tech-daily.xml"), "EU regulators")
    assert e.url == "https://techdaily.example/2026/11/24/eu-app-store-inquiry"


def test_relative_links_resolve_against_feed_and_entry_xml_base() -> None:
    feed = sample("world-wire.atom")
    assert feed.link == "https://worldwire.example/"
    chip = entry_by_title(feed, "Meridian")
    assert chip.url.startswith("https://worldwire.example/business/2026/11/26/meridian-tucson")
    strike = entry_by_title(feed, "Valparaíso")
    assert strike.canonical_url == (
        "https://worldwire.example/americas/2026/11/26/valparaiso-port-strike-ends"
    )


def test_local_file_feed_resolves_relative_links_against_its_home_page() -> None:
    path = FEEDS / "tech-daily.xml"
    feed = parse_feed(path.read_bytes(), str(path), now=NOW)
    e = entry_by_title(feed, "EU regulators")
    assert e.url == "https://techdaily.example/2026/11/24/eu-app-store-inquiry"


def test_tracking_parameters_and_fragments_are_removed_from_canonical_urls() -> None:
    e = entry_by_title(sample("tech-daily.xml"), "Meridian")
    assert "utm_" in e.url and "#comments" in e.url
    assert e.canonical_url == "https://techdaily.example/2026/11/26/meridian-chip-plant"


def test_spanish_feed_carries_its_language() -> None:
    feed = sample("noticias.xml")
    assert {e.language for e in feed.entries} == {"es"}
    strike = entry_by_title(feed, "Termina la huelga portuaria en Valparaíso")
    assert "Marcela Rojas" in strike.text


def test_a_description_only_item_keeps_its_whole_body() -> None:
    e = entry_by_title(sample("tech-daily.xml"), "Northwind Cloud outage")
    assert e.text.startswith("Northwind Cloud says its four-hour outage")
    assert e.text.endswith("a full incident report next week.")


def test_boilerplate_is_kept_in_text_for_later_stages_to_handle() -> None:
    e = entry_by_title(sample("tech-daily.xml"), "Quillstore 3.0")
    assert e.text.startswith("By Jane Doe, Staff Writer | Subscribe to our newsletter")
    assert e.author == "Jane Doe"


def test_rdf_items_use_dc_date_and_creator() -> None:
    e = entry_by_title(sample("science-notes.rdf"), "Perovskite")
    assert e.published == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    assert e.author == "Ola Lindqvist"
    assert "27.1 percent" in e.text  # content:encoded, the longer body, wins over description


# --- canonical URLs, text, hashes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        (
            "HTTPS://News.EXAMPLE:443/A/Path?b=2&utm_source=x&a=1#frag",
            "https://news.example/A/Path?a=1&b=2",
        ),
        ("http://news.example:80/x?", "http://news.example/x"),
        ("http://news.example:8080/x", "http://news.example:8080/x"),
        ("https://news.example", "https://news.example/"),
        (
            "https://n.example/p?fbclid=1&gclid=2&mc_cid=3&mc_eid=4&ref=5&ref_src=6&igshid=7"
            + "&yclid=8&_hsenc=9&_hsmi=10&spm=11&UTM_Medium=12",
            "https://n.example/p",
        ),
        ("https://n.example/p?q=a%20b&id=7", "https://n.example/p?id=7&q=a%20b"),
    ],
)
def test_canonicalize_url(url: str, canonical: str) -> None:
    assert canonicalize_url(url) == canonical


def test_html_to_text_removes_script_and_style_text_not_just_tags() -> None:
    html = "<p>Keep<script>alert(1)</script> this<style>p{color:red}</style>.</p>"
    assert html_to_text(html) == "Keep this."


def test_html_to_text_keeps_paragraphs_and_folds_other_whitespace() -> None:
    html = "<p>One\n  two</p><div>three&nbsp;four</div>five<br>six<br><br>seven\n\nEight"
    assert html_to_text(html) == "One two\n\nthree four\n\nfive six\n\nseven\n\nEight"


@pytest.mark.parametrize(
    ("title", "plain"),
    [
        ("<script>alert(1)</script>Hello", "Hello"),
        ("&lt;b&gt;Bold&lt;/b&gt; move", "Bold move"),
        (
            'AT&amp;T &#8217;26 <a href="javascript:x()" onclick="y()">deal</a>',
            "AT&T \u201926 deal",
        ),
        ("x < y and y > z", "x < y and y > z"),
    ],
)
def test_titles_become_plain_text_without_tags(title: str, plain: str) -> None:
    assert html_to_text(title) == plain


def test_content_hash_ignores_wrapping_and_whitespace_only() -> None:
    assert content_hash("A  b.\n\nC d.") == content_hash(html_to_text("<p>A b.</p>\n<p>C d.</p>"))
    assert content_hash("A b. C d.") != content_hash("A b. C e.")


# --- hostile and broken documents ------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<rss version="2.0"><channel><title>&lol3;</title><item><title>&lol3;</title>
<link>https://hostile.example/a</link></item></channel></rss>"""


def quadratic_blowup() -> bytes:
    entity = f'<!DOCTYPE rss [<!ENTITY big "{"A" * 20_000}">]>'
    return rss(item(body="&big;" * 5_000), prolog=entity)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        pytest.param(quadratic_blowup(), id="quadratic-blowup"),
        pytest.param(
            rss(item(body="&xxe;"), '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'),
            id="external-entity",
        ),
        pytest.param(
            rss(item(), '<!-- <rss> --><!doctype rss [<!entity e "x">]>'), id="entity-after-comment"
        ),
        pytest.param(
            BILLION_LAUGHS.decode()
            .replace('"1.0"?>', '"1.0" encoding="utf-16"?>', 1)
            .encode("utf-16"),
            id="utf-16",
        ),
        pytest.param(
            BILLION_LAUGHS.decode()
            .replace('"1.0"?>', '"1.0" encoding="cp037"?>', 1)
            .encode("cp037"),
            id="ebcdic",
        ),
        pytest.param(
            b'<?xml version="1.0" encoding="utf-7"?>'
            + BILLION_LAUGHS.split(b"?>", 1)[1].replace(b"<", b"+ADw-"),
            id="utf-7",
        ),
    ],
)
def test_documents_declaring_entities_are_refused(document: bytes) -> None:
    with pytest.raises(FeedRefused, match="declares XML entities"):
        parse_feed(document, URL)


def test_external_dtd_is_refused() -> None:
    doc = rss(item(), '<!DOCTYPE rss SYSTEM "http://attacker.example/evil.dtd">')
    with pytest.raises(FeedRefused, match="external DTD"):
        parse_feed(doc, URL)


def test_rss_091_netscape_doctype_is_accepted() -> None:
    doc = (
        b'<?xml version="1.0"?><!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"'
        b' "http://my.netscape.com/publish/formats/rss-0.91.dtd"><rss version="0.91"><channel>'
        b"<title>Old</title><link>https://old.example/</link><item><title>One</title>"
        b"<link>https://old.example/1</link><description>Body.</description></item></channel></rss>"
    )
    assert [e.url for e in parse_feed(doc, URL).entries] == ["https://old.example/1"]


def test_atom_03_feed_is_parsed() -> None:
    doc = (
        b'<?xml version="1.0"?><feed version="0.3" xmlns="http://purl.org/atom/ns#">'
        b"<title>T</title>"
        b'<entry><title>A</title><link rel="alternate" type="text/html" href="/a"/><id>tag:a</id>'
        b"<issued>2026-11-26T10:00:00Z</issued><modified>2026-11-26T10:00:00Z</modified>"
        b'<content type="text/html" mode="escaped">&lt;p&gt;Hi.&lt;/p&gt;</content></entry></feed>'
    )
    (e,) = parse_feed(doc, URL, now=NOW).entries
    assert (e.url, e.text, e.date_source) == ("https://hostile.example/a", "Hi.", "published")


def test_html_page_is_not_a_feed() -> None:
    page = b"<!doctype html><html><head><title>Shop</title></head><body><p>Hi</p></body></html>"
    with pytest.raises(PermanentError, match="not a feed"):
        parse_feed(page, URL)


@pytest.mark.parametrize(
    "document", [b"", b"<rss version=", b"just some words", b"<a><b>1</b></a>"]
)
def test_documents_with_no_feed_structure_are_not_feeds(document: bytes) -> None:
    with pytest.raises(PermanentError, match="not a feed") as raised:
        parse_feed(document, URL)
    assert not isinstance(raised.value, FeedRefused)


def test_truncated_feed_keeps_complete_entries_and_records_the_error() -> None:
    doc = (
        rss(item(title="Whole", body="Complete body.")).split(b"</channel>")[0] + b"<item><title>Ha"
    )
    feed = parse_feed(doc, URL)
    assert [e.title for e in feed.entries] == ["Whole"]
    assert feed.bozo_error and "no element found" in feed.bozo_error
    assert feed.dropped == [{"title": "", "guid": "entry #2", "reason": "no link"}]


@pytest.mark.parametrize(
    ("link", "scheme"),
    [
        ("javascript:alert(1)", "javascript"),
        (" JaVaScRiPt:alert(document.cookie)", "javascript"),
        ("data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;", "data"),
        ("vbscript:msgbox(1)", "vbscript"),
        ("file:///etc/passwd", "file"),
    ],
)
def test_entries_with_non_web_links_are_dropped_with_a_reason(link: str, scheme: str) -> None:
    feed = parse_feed(rss(item(link=link) + item(title="ok")), URL)
    assert [e.title for e in feed.entries] == ["ok"]
    (dropped,) = feed.dropped
    assert dropped["reason"] == f"link scheme {scheme!r} is not http(s)"
    assert scheme in dropped["guid"].lower()


def test_entry_without_link_is_dropped() -> None:
    doc = rss("<item><title>Lost</title><guid isPermaLink='false'>g-1</guid></item>")
    assert parse_feed(doc, URL).dropped == [{"title": "Lost", "guid": "g-1", "reason": "no link"}]


def test_scripts_in_content_and_title_leave_no_trace() -> None:
    body = (
        "<![CDATA[<p onclick='x()'>Real <script>document.write('evil')</script>news."
        "<img src=x onerror=alert(1)></p><a href='javascript:alert(1)'>link</a>]]>"
    )
    title = "&lt;script&gt;alert(1)&lt;/script&gt;Hello"
    (e,) = parse_feed(rss(item(title=title, body=body)), URL).entries
    assert (e.title, e.text) == ("Hello", "Real news.\n\nlink")


@pytest.mark.parametrize(
    "date",
    ["Thu, 01 Jan 1970 00:00:00 +0000", "Mon, 07 Dec 2026 10:00:00 +0000", "2026-13-45", "soon"],
)
def test_absurd_or_invalid_dates_give_no_date(date: str) -> None:
    (e,) = parse_feed(rss(item(date=date)), URL, now=NOW).entries
    assert (e.published, e.date_source) == (None, "none")


def test_date_two_days_ahead_is_accepted_as_clock_skew() -> None:
    when = NOW + timedelta(days=1)
    (e,) = parse_feed(
        rss(item(date=when.strftime("%a, %d %b %Y %H:%M:%S +0000"))), URL, now=NOW
    ).entries
    assert e.published == when


def test_future_published_falls_back_to_valid_updated() -> None:
    doc = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><entry><title>A</title>'
        b'<link href="https://hostile.example/a"/><id>tag:a</id>'
        b"<published>2031-01-01T00:00:00Z</published><updated>2026-11-26T08:00:00Z</updated>"
        b"<content>x</content></entry></feed>"
    )
    (e,) = parse_feed(doc, URL, now=NOW).entries
    assert (e.published, e.date_source) == (datetime(2026, 11, 26, 8, tzinfo=UTC), "updated")


def test_guid_falls_back_to_the_link() -> None:
    (e,) = parse_feed(rss(item(link="https://hostile.example/x?utm_source=a")), URL).entries
    assert e.guid == "https://hostile.example/x?utm_source=a"
