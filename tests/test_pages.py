"""Specification of full text from article pages (`tasks.pages`): a teaser's page is fetched
safely and politely, and any failure leaves the article on its feed text with the reason.

A loopback test site serves good and hostile pages; the connect guard of test_fetcher fails any
test whose code connects beyond loopback, so refused addresses are provably never contacted.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.settings import get_settings
from tasks import robots
from tasks.pages import fetch_article_page, fetch_page, needs_page
from tasks.redisconn import get_redis
from tests.feedserver import FeedServer, feed, redirect, sized, status, trickle
from tests.test_fetcher import connects  # noqa: F401 - autouse: nothing beyond loopback
from vectorstore import articles as store
from vectorstore import feeds as feed_store
from vectorstore import pages as page_store

TEASER = "The council voted to expand the tram network, officials said on Tuesday."
PARA = (
    "The city council voted on Tuesday to expand the tram network by twelve kilometres, "
    "adding nine stops between the harbour and the university campus. "
)
ROBOTS = b"User-agent: AgenticMediaLab\nDisallow: /private\n\nUser-agent: *\nDisallow: /all\n"


def html(paragraphs: int, title: str = "Council expands tram network") -> bytes:
    body = "".join(
        f"<p>{PARA} Paragraph {i} adds detail about costs, timing and routes.</p>"
        for i in range(paragraphs)
    )
    return (
        f"<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a></nav>"
        f"<article><h1>{title}</h1>{body}</article><footer>Contact us</footer></body></html>"
    ).encode()


def page(body: bytes, **kwargs: str) -> object:
    return feed(body, content_type="text/html; charset=utf-8", **kwargs)


@pytest.fixture(autouse=True)
def page_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A 1 s page deadline (the drip test), and no robots.txt cached from another test."""
    monkeypatch.setenv("PAGE_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("FETCH_FULL_TEXT", "on")  # the session keeps it off for other tests
    get_settings.cache_clear()
    _forget_robots()
    yield monkeypatch
    get_settings.cache_clear()
    _forget_robots()


def _forget_robots() -> None:
    robots.clear_local_cache()
    client = get_redis()
    if client is not None:
        for key in client.scan_iter(f"{robots.CACHE_PREFIX}*"):
            client.delete(key)


@pytest.fixture
def site() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        srv.route("/robots.txt", feed(ROBOTS, content_type="text/plain"))
        yield srv


def add_article(db, url: str, body: str = TEASER, content_hash: str | None = None) -> int:
    """One article of a feed on the test site, as ingestion stores it."""
    with db.connection() as conn:
        feed_id = feed_store.upsert_feed(conn, "http://127.0.0.1/feed.xml")
        [aid] = store.upsert_articles(
            conn, feed_id,
            [store.NewArticle(guid=url, url=url, canonical_url=url, title="Trams", body=body,
                              content_hash=content_hash or f"h-{url}", published=None,
                              date_source="none")],
        )  # fmt: skip
    return aid


def stored(db, aid: int) -> dict | None:
    with db.connection() as conn:
        return page_store.get_page(conn, aid)


# --- the page is used ------------------------------------------------------------------------


def test_a_teasers_page_text_is_stored_and_used(db, site: FeedServer) -> None:
    aid = add_article(db, site.route("/story", page(html(8))))
    result = fetch_article_page(aid)
    assert result["text_source"] == "page" and result["text_error"] is None
    assert result["words"] > 200 and result["cached"] is False
    row = stored(db, aid)
    assert row["status"] == "ok" and row["url"] == site.url("/story") and row["fetched_at"]
    with db.connection() as conn:
        assert page_store.page_text(conn, aid, f"h-{site.url('/story')}") == row["text"]
        assert page_store.page_text(conn, aid, "another-hash") is None
        assert page_store.page_outcomes(conn, [aid]) == {
            aid: {"text_source": "page", "text_error": None}
        }
        assert page_store.page_counts(conn, [aid]) == {"used": 1, "not_used": {}}
    [request] = [s for s in site.seen if s.path == "/story"]
    assert request.headers["User-Agent"] == get_settings().user_agent
    assert "text/html" in request.headers["Accept"]


def test_a_second_call_reuses_the_stored_page(db, site: FeedServer) -> None:
    aid = add_article(db, site.route("/story", page(html(8))))
    first = fetch_article_page(aid)
    second = fetch_article_page(aid, retry_transient=True)
    assert second == {**first, "cached": True}
    assert site.hits["/story"] == 1


def test_changed_feed_content_refetches_conditionally(db, site: FeedServer) -> None:
    url = site.route("/story", page(html(8), etag='"v1"'))
    aid = add_article(db, url)
    fetch_article_page(aid)
    add_article(db, url, body=TEASER + " Updated.", content_hash="h-changed")
    result = fetch_article_page(aid)
    assert result["text_source"] == "page" and result["cached"] is False
    assert [s.headers.get("If-None-Match") for s in site.seen if s.path == "/story"] == [
        None,
        '"v1"',
    ]
    row = stored(db, aid)
    assert (row["status"], row["feed_hash"], row["http_status"]) == ("ok", "h-changed", 304)


def test_page_text_not_longer_than_the_feed_text_is_not_used(db, site: FeedServer) -> None:
    feed_text = " ".join(["word"] * 60)
    aid = add_article(db, site.route("/short", page(html(1))), body=feed_text)
    result = fetch_article_page(aid)
    assert result["text_source"] == "feed" and result["words"] == 60
    assert result["text_error"].startswith("page text (")
    assert result["text_error"].endswith("not longer than the feed text (60 words)")
    assert stored(db, aid)["status"] == "not_used"
    with db.connection() as conn:
        assert page_store.page_text(conn, aid, f"h-{site.url('/short')}") is None


def test_full_text_off_asks_for_no_page(page_settings) -> None:
    """The article graph plans a page step only when `needs_page` says so."""
    assert needs_page(TEASER)
    page_settings.setenv("FETCH_FULL_TEXT", "off")
    get_settings.cache_clear()
    assert not needs_page(TEASER)


def test_only_teasers_need_their_page() -> None:
    assert needs_page(TEASER)
    assert not needs_page(" ".join(["word"] * 80))


# --- hostile pages: the article stays on its feed text, with the reason ----------------------

AGENT = "AgenticMediaLab"
HOSTILE = {
    "/meta": (
        redirect("http://169.254.169.254/latest/meta-data/"),
        "refused: 169.254.169.254, a link-local address",
        False,
    ),
    "/intranet": (redirect("http://10.0.0.5/admin"), "refused: 10.0.0.5, a private address", False),
    "/huge": (sized(30 * 2**20, "text/html"), "larger than 3000000 bytes", False),
    "/drip": (trickle(0.05, content_type="text/html"), "timed out after 1 s", True),
    "/gone": (status(404), "HTTP 404", False),
    "/empty": (status(200, {"Content-Type": "text/html"}), "no main text found", False),
    "/paper.pdf": (
        status(200, {"Content-Type": "application/pdf"}, b"%PDF-1.7 ..."),
        "not HTML: application/pdf",
        False,
    ),
    "/private/story": (page(html(8)), f"robots.txt disallows /private/story for {AGENT}", False),
    "/busy": (status(503), "HTTP 503", True),
    "/slow-down": (status(429), "HTTP 429", True),
}  # fmt: skip


@pytest.mark.parametrize("path", list(HOSTILE))
def test_a_hostile_page_leaves_the_article_on_its_feed_text(
    db,
    site: FeedServer,
    connects,  # noqa: F811 - the guard's record of every connect
    path: str,
) -> None:
    responder, reason, transient = HOSTILE[path]
    aid = add_article(db, site.route(path, responder))
    result = fetch_article_page(aid)
    assert result["text_source"] == "feed" and result["words"] == len(TEASER.split())
    assert reason in result["text_error"]
    row = stored(db, aid)
    assert (row["status"], row["transient"], row["text"]) == ("failed", transient, None)
    assert reason in row["error"]
    with db.connection() as conn:
        assert page_store.page_outcomes(conn, [aid])[aid]["text_source"] == "feed"
        assert page_store.page_counts(conn, [aid]) == {"used": 0, "not_used": {row["error"]: 1}}
    assert {address[0] for address in connects} == {"127.0.0.1"}
    assert site.hits["/private/story"] == 0


def test_a_redirect_to_a_disallowed_path_is_not_followed(db, site: FeedServer) -> None:
    site.route("/private/full", page(html(8)))
    aid = add_article(db, site.route("/go", redirect(site.url("/private/full"))))
    assert "robots.txt disallows /private/full" in fetch_article_page(aid)["text_error"]
    assert site.hits["/go"] == 1 and site.hits["/private/full"] == 0


def test_transient_failures_retry_once_in_the_task_and_again_on_request(
    db, site: FeedServer
) -> None:
    aid = add_article(db, site.route("/story", status(503)))
    assert fetch_article_page(aid)["text_error"] == "HTTP 503"
    assert site.hits["/story"] == 2  # one quick retry, no more
    site.route("/story", page(html(8)))
    assert fetch_article_page(aid)["cached"] is True  # a plain re-run does not fetch again
    assert site.hits["/story"] == 2
    result = fetch_article_page(aid, retry_transient=True)
    assert result["text_source"] == "page" and site.hits["/story"] == 3


def test_a_name_that_does_not_resolve_is_permanent(db, monkeypatch) -> None:
    asked: list[str] = []

    def no_such_name(host: str, *args: object, **kwargs: object) -> list:
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)  # no resolver is ever asked
    aid = add_article(db, "http://nowhere.example/story")
    result = fetch_article_page(aid)
    assert result["text_error"] == "host nowhere.example does not exist"
    assert stored(db, aid)["transient"] is False
    assert fetch_article_page(aid, retry_transient=True)["cached"] is True
    assert set(asked) == {"nowhere.example"}


def test_a_404_is_not_retried(db, site: FeedServer) -> None:
    aid = add_article(db, site.route("/story", status(404)))
    fetch_article_page(aid)
    site.route("/story", page(html(8)))
    result = fetch_article_page(aid, retry_transient=True)
    assert (result["text_error"], result["cached"]) == ("HTTP 404", True)
    assert site.hits["/story"] == 1


# --- robots.txt ------------------------------------------------------------------------------


def test_robots_txt_is_fetched_once_per_host(db, site: FeedServer) -> None:
    ids = [add_article(db, site.route(f"/s{i}", page(html(8)))) for i in range(3)]
    assert [fetch_article_page(aid)["text_source"] for aid in ids] == ["page"] * 3
    assert site.hits["/robots.txt"] == 1


def test_robots_txt_server_error_disallows_for_now(db, site: FeedServer) -> None:
    site.route("/robots.txt", status(503))
    aid = add_article(db, site.route("/story", page(html(8))))
    result = fetch_article_page(aid)
    assert result["text_error"] == "robots.txt unreachable (HTTP 503)"
    assert stored(db, aid)["transient"] is True
    assert site.hits["/story"] == 0


def test_robots_txt_missing_allows_all(db, site: FeedServer) -> None:
    site.route("/robots.txt", status(404))
    aid = add_article(db, site.route("/private/story", page(html(8))))
    assert fetch_article_page(aid)["text_source"] == "page"


def test_robots_groups_match_the_configured_user_agent(db, site, page_settings) -> None:
    page_settings.setenv("USER_AGENT", "OtherBot/2.0 (+https://example.org/bot)")
    get_settings.cache_clear()
    site.route("/robots.txt", feed(b"User-agent: OtherBot\nDisallow: /story\n"))
    aid = add_article(db, site.route("/story", page(html(8))))
    assert fetch_article_page(aid)["text_error"] == "robots.txt disallows /story for OtherBot"
    assert {s.headers["User-Agent"] for s in site.seen} == {
        "OtherBot/2.0 (+https://example.org/bot)"
    }


# --- politeness: requests at once per host ---------------------------------------------------


class Gauge:
    """Requests the server is holding at once, and the most it ever held."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def holding(self, body: bytes, seconds: float = 0.2) -> object:
        def respond(handler) -> None:  # noqa: ANN001
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            handler.server.owner.stopping.wait(seconds)
            with self.lock:
                self.now -= 1
            handler.send(200, {"Content-Type": "text/html"}, body)

        return respond


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "in-process"])
def test_at_most_page_max_per_host_requests_at_once(db, site, page_settings, shared) -> None:
    page_settings.setenv("PAGE_MAX_PER_HOST", "2")
    page_settings.setenv("PAGE_TIMEOUT_SECONDS", "5")
    if not shared:  # the embedded mode: no Redis anywhere
        for var in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            page_settings.delenv(var)
    get_settings.cache_clear()
    assert (get_redis() is not None) is shared
    gauge = Gauge()
    ids = [add_article(db, site.route(f"/s{i}", gauge.holding(html(8)))) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(fetch_article_page, ids))
    assert [r["text_source"] for r in results] == ["page"] * 6
    assert gauge.peak == 2
    assert site.hits["/robots.txt"] == 1


# --- the task ---------------------------------------------------------------------------------


def test_fetch_page_runs_on_the_ingest_queue_in_a_worker(db, site, fleet_worker) -> None:
    from tasks.app import app

    assert app.amqp.router.route({}, fetch_page.name)["queue"].name == "ingest"
    aid = add_article(db, site.route("/story", page(html(8))))
    result = fetch_page.delay(aid).get(timeout=60)
    assert result["text_source"] == "page" and result["article_id"] == aid
    assert stored(db, aid)["status"] == "ok" and site.hits["/story"] == 1
