"""Article extraction from a page's HTML and teaser detection (pure, on the labelled pages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.extract import decode_html, extract_article, looks_like_teaser

TUNE = Path(__file__).resolve().parent.parent / "bench" / "pages" / "tune"


def page(name: str) -> str:
    return (TUNE / f"{name}.html").read_text("utf-8")


# (page, a sentence deep in the article body, boilerplate on that page that must not come out)
CASES = [
    (
        "news_article",
        "The operator expects trams on the branch every six minutes at peak times.",
        ["We use cookies", "Share on Facebook", "Council approves winter gritting budget",
         "All rights reserved", "Subscribe", "Business"],
    ),
    (
        "blog_comments",
        "Let the loaf rest a full day before slicing; rye needs time to set.",
        ["I tried this last weekend", "Leave a Reply", "September 2026", "retired teacher",
         "Proudly powered"],
    ),
    (
        "main_only",
        "The school cook, Martin Ebbe, says the children are more willing to try vegetables",
        ["Get the Valley Weekly briefing", "Sign me up", "Create account", "Riverside Media"],
    ),
    (
        "div_soup",
        "About one in eight meters in the study needed a second visit.",
        ["Advertisement", "Save 40%", "Most read", "Cookie settings", "Celebrity chef"],
    ),
    (
        "spanish",
        "La entidad agrupa a unos 780 agricultores de cuatro municipios.",
        ["Utilizamos cookies", "Suscríbete a nuestro boletín", "Lo más leído",
         "Todos los derechos reservados"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "deep", "boilerplate"), CASES, ids=[c[0] for c in CASES])
def test_the_article_body_comes_out_without_the_page_around_it(
    name: str, deep: str, boilerplate: list[str]
) -> None:
    text = extract_article(page(name), url=f"https://example.org/{name}")
    assert text is not None
    assert deep in text
    for junk in boilerplate:
        assert junk not in text, junk


def test_paragraphs_are_separated_by_blank_lines_and_carry_no_markup() -> None:
    text = extract_article(page("figure_links"))
    assert text is not None
    paragraphs = text.split("\n\n")
    assert len(paragraphs) >= 4
    assert all(p == p.strip() and "\n" not in p for p in paragraphs)
    assert "<" not in text and "&amp;" not in text
    # links and emphasis inside the article's paragraphs are kept as their words
    assert "The island ferry company Westway Crossings will run two extra return sailings" in text
    assert "which meant many families had to stay overnight" in text
    assert "Summer 2026 410,000" in text  # table cells do not run together
    assert "WhatsApp" not in text and "Harbour seal pup" not in text


def test_a_page_without_an_article_element_works() -> None:
    html = page("div_soup")
    assert "<article" not in html and "<main" not in html
    text = extract_article(html)
    assert text is not None
    assert "Households cut energy use by a tenth" in text or "eleven percent less" in text
    assert "The regulator plans to publish regional figures in January." in text


def test_a_french_page_keeps_its_accents_and_drops_its_comments() -> None:
    text = extract_article(page("french").encode("utf-8"))
    assert text is not None
    assert "« Nous avions peur de perdre une saison entière »" in text
    assert "Une consultation des habitants sera lancée au printemps." in text
    for junk in ("Enfin une bonne nouvelle", "Ce site utilise des cookies", "Mentions légales"):
        assert junk not in text


def test_bytes_are_decoded_with_the_meta_charset_or_the_declared_one() -> None:
    # an "iso-8859-1" label means windows-1252, as in browsers (the page has „quotes")
    html = page("german").replace('charset="utf-8"', 'charset="iso-8859-1"')
    text = extract_article(html.encode("cp1252"))
    assert text is not None and "Fußgänger" in text and "„Zustimmen" not in text
    no_meta = page("german").replace('<meta charset="utf-8">', "")
    assert "Fußgänger" in extract_article(no_meta.encode("cp1252"), charset="windows-1252")
    assert "Fußgänger" in extract_article(no_meta.encode("utf-8"))  # no label: UTF-8 first


def test_decoding_never_fails_on_bad_bytes_or_unknown_labels() -> None:
    assert decode_html(b'<meta charset="no-such-charset"><p>caf\xe9</p>') == (
        '<meta charset="no-such-charset"><p>café</p>'
    )
    assert decode_html("<p>x</p>".encode("utf-8-sig")) == "<p>x</p>"


@pytest.mark.parametrize(
    "html",
    [
        "",
        "   \n ",
        b"",
        "\x00\xff<<<>>>&&&;;; ][",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "just a few words, not a page",
        "<html><body><nav><a href=/>Home</a></nav><form><h1>Sign in</h1><label>Email</label>"
        "<input><label>Password</label><input type=password><button>Log in</button></form>"
        "<footer>© 2026 Example</footer></body></html>",
        "<html><body><main><ul>"
        + "".join(f"<li><a href='/s/{i}'>Headline {i} on the vote</a></li>" for i in range(30))
        + "</ul></main></body></html>",
        "<html><body><h1>Page not found</h1><p>Sorry, that page does not exist.</p></body></html>",
    ],
    ids=["empty", "blank", "empty-bytes", "garbage", "png", "plain", "login", "link-list", "404"],
)
def test_pages_without_a_main_text_give_none(html: str | bytes) -> None:
    assert extract_article(html) is None


EN = "The council met on Tuesday to discuss the budget for next year and the "
ES = "El ayuntamiento se reunió el martes para hablar del presupuesto del año "
FR = "Le conseil municipal s'est réuni mardi pour discuter du budget de l'an "
DE = "Der Stadtrat hat am Dienstag über den Haushalt für das nächste Jahr "


@pytest.mark.parametrize(
    "text",
    [
        "Short teaser.",
        EN * 3 + "Read more",
        EN * 3 + "Continue reading →",
        EN * 3 + "[…]",
        EN * 3 + "more [...]",
        EN * 3 + "…",
        EN * 3 + "...",
        ES * 3 + "Leer más",
        FR * 3 + "Lire la suite",
        DE * 3 + "Weiterlesen »",
    ],
    ids=[
        "short",
        "read-more",
        "continue",
        "bracket-ellipsis",
        "bracket-dots",
        "ellipsis",
        "dots",
        "es",
        "fr",
        "de",
    ],  # fmt: skip
)
def test_short_or_visibly_cut_texts_look_like_teasers(text: str) -> None:
    assert looks_like_teaser(text, min_words=20)


def test_a_complete_text_does_not_look_like_a_teaser() -> None:
    text = (TUNE / "news_article.txt").read_text("utf-8")
    assert not looks_like_teaser(text, min_words=100)
    assert looks_like_teaser(text, min_words=10_000)
    # "read more" in the middle of a sentence is not a cut
    assert not looks_like_teaser("People read more books in winter, the survey found. " * 5, 20)
