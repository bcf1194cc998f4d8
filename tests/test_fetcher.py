"""Specification of `tasks.fetcher`: hostile URLs are refused before any connection, and a
fetch is bounded in time and bytes. All traffic stays on loopback: a guard fails any test whose
code under test connects anywhere else."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from core.errors import FeedRefused, PermanentError, TransientError
from core.settings import get_settings
from tasks.fetcher import USER_AGENT, check_url, fetch_url, read_local_feed
from tests.feedserver import (
    FeedServer,
    encoded,
    endless,
    feed,
    gzip_bomb,
    redirect,
    sized,
    status,
    trickle,
    wait_for,
)

LOOPBACK = ["127.0.0.0/8"]
RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


@pytest.fixture(autouse=True)
def connects(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every TCP connect made during the test; one beyond loopback fails it, unsent."""
    made: list[tuple[str, int]] = []
    outside: list[object] = []
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: tuple[str, int]) -> None:
        if not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
            outside.append(address)
            raise AssertionError(f"test tried to reach {address} beyond loopback")
        made.append(address)
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield made
    assert outside == []


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict[str, list[str]], list[str]]]:
    """A DNS of our own: names -> addresses, and every name asked. Numeric hosts pass through."""
    names: dict[str, list[str]] = {}
    asked: list[str] = []
    real = socket.getaddrinfo
    release = threading.Event()

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list:
        asked.append(host)
        if host == "slow.example":
            release.wait(5)
        if host not in names:
            return real(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [
            (family[ipaddress.ip_address(ip).version], socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in names[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield names, asked
    release.set()


@pytest.fixture(autouse=True)
def no_allowed_networks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests start from the default: no network is allowed beyond the public ones."""
    monkeypatch.delenv("FEED_ALLOWED_NETWORKS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv("FEED_ALLOWED_NETWORKS", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def chain(server: FeedServer, redirects: int) -> str:
    """`redirects` hops /r0 -> /r1 -> ... ending at /feed; returns the first URL."""
    server.route("/feed", feed(RSS))
    for i in range(redirects):
        target = server.url(f"/r{i + 1}") if i + 1 < redirects else server.url("/feed")
        server.route(f"/r{i}", redirect(target))
    return server.url("/r0") if redirects else server.url("/feed")


# --- the happy path ---------------------------------------------------------------------------


def test_plain_feed_is_fetched(server: FeedServer) -> None:
    url = server.route("/feed", feed(RSS))
    result = fetch_url(url, allowed_networks=LOOPBACK)
    assert (result.status, result.http_status, result.content) == ("ok", 200, RSS)
    assert result.content_type == "application/rss+xml"
    assert result.final_url == url


def test_settings_supply_the_allowed_networks(server: FeedServer, fresh_settings) -> None:
    url = server.route("/feed", feed(RSS))
    with pytest.raises(FeedRefused):
        fetch_url(url)
    fresh_settings.setenv("FEED_ALLOWED_NETWORKS", "127.0.0.0/8")
    get_settings.cache_clear()
    assert fetch_url(url).content == RSS


def test_user_agent_is_sent_on_every_hop(server: FeedServer) -> None:
    fetch_url(chain(server, 2), allowed_networks=LOOPBACK)
    assert [s.path for s in server.seen] == ["/r0", "/r1", "/feed"]
    assert {s.headers["User-Agent"] for s in server.seen} == {USER_AGENT}
    assert "AgenticMediaLab" in USER_AGENT


def test_request_goes_to_the_checked_ip_with_the_original_host_header(server, resolver) -> None:
    names, asked = resolver
    names["feeds.example"] = ["127.0.0.1"]
    server.route("/feed", feed(RSS))
    url = f"http://feeds.example:{server.port}/feed"
    result = fetch_url(url, allowed_networks=LOOPBACK)
    assert result.content == RSS and result.final_url == url
    assert server.seen[0].headers["Host"] == f"feeds.example:{server.port}"
    assert server.seen[0].client_ip == "127.0.0.1"
    assert asked.count("feeds.example") == 1  # no second lookup that could be rebound


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI for a cert")
def test_https_is_sent_to_the_ip_with_the_original_host_as_sni(resolver, tmp_path: Path) -> None:
    names, _ = resolver
    names["feeds.example"] = ["127.0.0.1"]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=feeds.example",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    sni: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: sni.append(name)
    with FeedServer(tls=context) as tls_server:
        # The self-signed certificate is not trusted: the handshake shows what the client sent.
        with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch_url(f"https://feeds.example:{tls_server.port}/", allowed_networks=LOOPBACK)
        assert wait_for(lambda: sni == ["feeds.example"]), sni


def test_check_url_returns_host_port_and_the_address_to_use() -> None:
    assert check_url("http://127.0.0.1:8080/rss", LOOPBACK) == ("127.0.0.1", 8080, "127.0.0.1")
    assert check_url("https://[::1]/rss", ["::1/128"]) == ("::1", 443, "::1")


# --- hostile URLs: refused before any connection ----------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "the file: scheme"),
        ("ftp://example.com/feed.xml", "the ftp: scheme"),
        ("gopher://example.com/", "the gopher: scheme"),
        ("data:text/xml,<rss/>", "the data: scheme"),
        ("javascript:alert(1)", "the javascript: scheme"),
        ("example.com/feed.xml", "no scheme"),
        ("//example.com/feed.xml", "no scheme"),
        ("http:///feed.xml", "no host"),
    ],
)
def test_non_http_urls_are_refused(url: str, reason: str, connects: list) -> None:
    with pytest.raises(FeedRefused, match=reason):
        fetch_url(url)
    assert connects == []


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("2130706433", "loopback"),  # decimal
        ("0x7f000001", "loopback"),  # hex
        ("0177.0.0.1", "loopback|Invalid IPv4"),  # octal
        ("0177.1", "loopback"),
        ("127.1", "loopback"),
        ("0", "unspecified"),  # 0.0.0.0 reaches this host on Linux
        ("localhost", "loopback"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "maps to a loopback"),
        ("[::ffff:7f00:1]", "maps to a loopback"),
    ],
)
def test_loopback_spellings_are_refused_without_connecting(
    server: FeedServer, connects: list, host: str, reason: str
) -> None:
    server.route("/feed", feed(RSS))
    url = f"http://{host}:{server.port}/feed"
    with pytest.raises(FeedRefused, match=reason):
        fetch_url(url, allowed_networks=[])
    assert connects == [] and server.connections == 0


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("100.64.0.1", "not a public"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private|reserved"),
        ("255.255.255.255", "private|reserved"),
        ("[fe80::1]", "link-local"),
        ("[fc00::1]", "private"),
        ("[fec0::1]", "site-local"),
        ("[ff02::1]", "multicast"),
        ("[::ffff:169.254.169.254]", "maps to a link-local"),
        ("[2002:a00:1::1]", "embeds a private"),  # 6to4 of 10.0.0.1
        ("[2002:7f00:1::1]", "embeds a loopback"),  # 6to4 of 127.0.0.1
        ("[64:ff9b::a00:1]", "embeds a private"),  # NAT64 of 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused_at_the_check(
    connects: list, host: str, reason: str
) -> None:
    with pytest.raises(FeedRefused, match=reason) as refused:
        fetch_url(f"http://{host}/feed.xml", allowed_networks=LOOPBACK)
    assert "FEED_ALLOWED_NETWORKS" in str(refused.value)
    assert connects == []


def test_a_name_resolving_to_loopback_is_refused(server: FeedServer, resolver, connects) -> None:
    names, _ = resolver
    names["rebind.example"] = ["127.0.0.1"]
    with pytest.raises(FeedRefused, match="rebind.example resolves to 127.0.0.1, a loopback"):
        fetch_url(f"http://rebind.example:{server.port}/feed")
    assert connects == [] and server.connections == 0


def test_every_resolved_address_must_be_public(resolver, connects: list) -> None:
    names, _ = resolver
    names["mixed.example"] = ["93.184.216.34", "10.0.0.1"]
    with pytest.raises(FeedRefused, match="10.0.0.1, a private"):
        fetch_url("http://mixed.example/feed.xml")
    assert connects == []


def test_ipv6_loopback_server_is_not_reached_when_not_allowed(connects: list) -> None:
    try:
        v6 = FeedServer("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with v6:
        url = v6.route("/feed", feed(RSS))
        with pytest.raises(FeedRefused, match="loopback"):
            fetch_url(url, allowed_networks=LOOPBACK)
        assert connects == [] and v6.connections == 0
        assert fetch_url(url, allowed_networks=["::1/128"]).content == RSS


# --- redirects --------------------------------------------------------------------------------


def test_relative_redirect_is_followed_and_reported(server: FeedServer) -> None:
    server.route("/feed", feed(RSS))
    result = fetch_url(server.route("/old", redirect("/feed", 301)), allowed_networks=LOOPBACK)
    assert result.content == RSS and result.final_url == server.url("/feed")


def test_redirect_to_a_private_address_is_refused(server: FeedServer, connects: list) -> None:
    url = server.route("/moved", redirect("http://10.0.0.1/feed.xml"))
    with pytest.raises(FeedRefused, match="10.0.0.1, a private"):
        fetch_url(url, allowed_networks=LOOPBACK)
    assert server.hits["/moved"] == 1
    assert {host for host, _ in connects} == {"127.0.0.1"}


def test_redirect_to_a_loopback_address_not_allowed_is_never_requested(server: FeedServer) -> None:
    with FeedServer("127.0.0.2") as inner:
        target = inner.route("/admin", feed(b"secret"))
        url = server.route("/moved", redirect(target, 307))
        with pytest.raises(FeedRefused, match="127.0.0.2, a loopback"):
            fetch_url(url, allowed_networks=["127.0.0.1/32"])
        assert server.hits["/moved"] == 1 and inner.connections == 0


def test_redirect_to_a_file_url_is_refused(server: FeedServer) -> None:
    url = server.route("/moved", redirect("file:///etc/passwd"))
    with pytest.raises(FeedRefused, match="the file: scheme"):
        fetch_url(url, allowed_networks=LOOPBACK)


def test_five_redirects_are_followed(server: FeedServer) -> None:
    result = fetch_url(chain(server, 5), allowed_networks=LOOPBACK)
    assert result.content == RSS and server.hits["/feed"] == 1


def test_six_redirects_are_a_permanent_error(server: FeedServer) -> None:
    with pytest.raises(PermanentError, match="more than 5"):
        fetch_url(chain(server, 6), allowed_networks=LOOPBACK)
    assert server.hits["/r5"] == 1 and server.hits["/feed"] == 0


# --- time and size bounds ---------------------------------------------------------------------


def timed(call: Callable[[], object]) -> tuple[BaseException, float]:
    start = time.monotonic()
    with pytest.raises((TransientError, PermanentError)) as caught:
        call()
    return caught.value, time.monotonic() - start


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_a_trickling_server_ends_at_the_deadline(server: FeedServer, in_headers: bool) -> None:
    url = server.route("/slow", trickle(0.1, in_headers=in_headers))
    error, elapsed = timed(lambda: fetch_url(url, allowed_networks=LOOPBACK, timeout=1.0))
    assert type(error) is TransientError and "within 1 s" in str(error)
    assert 0.9 < elapsed < 1.5


def test_a_hanging_resolver_ends_at_the_deadline(resolver) -> None:
    error, elapsed = timed(lambda: fetch_url("http://slow.example/feed.xml", timeout=0.5))
    assert type(error) is TransientError and "resolving slow.example" in str(error)
    assert elapsed < 1.0


def test_the_deadline_covers_all_hops_together(server: FeedServer) -> None:
    server.route("/slow", trickle(0.1))
    url = server.route("/moved", redirect("/slow"))
    error, elapsed = timed(lambda: fetch_url(url, allowed_networks=LOOPBACK, timeout=0.6))
    assert type(error) is TransientError and elapsed < 1.1


def test_a_body_at_the_cap_is_accepted(server: FeedServer) -> None:
    url = server.route("/feed", sized(1000))
    assert len(fetch_url(url, allowed_networks=LOOPBACK, max_bytes=1000).content or b"") == 1000


def test_a_body_over_the_cap_is_a_permanent_error(server: FeedServer) -> None:
    url = server.route("/huge", sized(50_000_000))
    with pytest.raises(PermanentError, match="feed larger than 100000 bytes"):
        fetch_url(url, allowed_networks=LOOPBACK, max_bytes=100_000)


def test_an_endless_body_stops_at_the_cap(server: FeedServer) -> None:
    url = server.route("/endless", endless())
    error, elapsed = timed(lambda: fetch_url(url, allowed_networks=LOOPBACK, max_bytes=1_000_000))
    assert type(error) is PermanentError and "larger than 1000000" in str(error)
    assert elapsed < 2


def test_a_gzip_bomb_stops_early_with_bounded_memory(server: FeedServer) -> None:
    url = server.route("/bomb", gzip_bomb(1 << 30))
    tracemalloc.start()
    try:
        error, elapsed = timed(lambda: fetch_url(url, allowed_networks=LOOPBACK, max_bytes=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert type(error) is PermanentError and "feed larger than" in str(error)
    assert elapsed < 3
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB for a 1 MiB cap"  # iter_bytes: ~144


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "identity"])
def test_encoded_bodies_are_decoded(server: FeedServer, encoding: str) -> None:
    url = server.route("/feed", encoded(RSS, encoding))
    assert fetch_url(url, allowed_networks=LOOPBACK).content == RSS
    assert server.seen[0].headers["Accept-Encoding"] == "gzip"


def test_the_cap_counts_decoded_bytes(server: FeedServer) -> None:
    url = server.route("/feed", encoded(b"<item/>" * 10_000, "gzip"))  # ~0.2 KB on the wire
    with pytest.raises(PermanentError, match="larger than 50000 bytes"):
        fetch_url(url, allowed_networks=LOOPBACK, max_bytes=50_000)


@pytest.mark.parametrize(("encoding", "reason"), [("br", "do not accept"), ("gzip", "decode")])
def test_undecodable_bodies_are_permanent(server: FeedServer, encoding: str, reason: str) -> None:
    url = server.route("/feed", status(200, {"Content-Encoding": encoding}, b"not compressed"))
    with pytest.raises(PermanentError, match=reason):
        fetch_url(url, allowed_networks=LOOPBACK)


# --- conditional GET and status codes ---------------------------------------------------------

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def test_validators_are_returned(server: FeedServer) -> None:
    url = server.route("/feed", feed(RSS, etag='"v1"', last_modified=LAST_MODIFIED))
    result = fetch_url(url, allowed_networks=LOOPBACK)
    assert (result.etag, result.last_modified) == ('"v1"', LAST_MODIFIED)


def test_etag_makes_a_conditional_get(server: FeedServer) -> None:
    url = server.route("/feed", feed(RSS, etag='"v1"'))
    result = fetch_url(url, etag='"v1"', allowed_networks=LOOPBACK)
    assert (result.status, result.http_status, result.content) == ("not_modified", 304, None)
    assert result.etag == '"v1"'
    assert server.seen[0].headers["If-None-Match"] == '"v1"'


def test_last_modified_makes_a_conditional_get(server: FeedServer) -> None:
    url = server.route("/feed", feed(RSS, last_modified=LAST_MODIFIED))
    result = fetch_url(url, last_modified=LAST_MODIFIED, allowed_networks=LOOPBACK)
    assert result.status == "not_modified"
    assert server.seen[0].headers["If-Modified-Since"] == LAST_MODIFIED


def test_no_validators_no_conditional_headers(server: FeedServer) -> None:
    fetch_url(server.route("/feed", feed(RSS, etag='"v1"')), allowed_networks=LOOPBACK)
    assert "If-None-Match" not in server.seen[0].headers
    assert "If-Modified-Since" not in server.seen[0].headers


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
def test_client_errors_are_permanent(server: FeedServer, code: int) -> None:
    url = server.route("/feed", status(code))
    with pytest.raises(PermanentError, match=str(code)) as caught:
        fetch_url(url, allowed_networks=LOOPBACK)
    assert not isinstance(caught.value, FeedRefused)


@pytest.mark.parametrize("code", [500, 502, 504])
def test_server_errors_are_transient(server: FeedServer, code: int) -> None:
    with pytest.raises(TransientError, match=str(code)) as caught:
        fetch_url(server.route("/feed", status(code)), allowed_networks=LOOPBACK)
    assert caught.value.retry_after is None


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_seconds_is_passed_on(server: FeedServer, code: int) -> None:
    url = server.route("/feed", status(code, {"Retry-After": "120"}))
    with pytest.raises(TransientError, match=str(code)) as caught:
        fetch_url(url, allowed_networks=LOOPBACK)
    assert caught.value.retry_after == 120


def test_retry_after_http_date_is_passed_on(server: FeedServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    url = server.route("/feed", status(503, {"Retry-After": when}))
    with pytest.raises(TransientError) as caught:
        fetch_url(url, allowed_networks=LOOPBACK)
    assert caught.value.retry_after is not None and 85 <= caught.value.retry_after <= 90


def test_unreadable_retry_after_is_ignored(server: FeedServer) -> None:
    url = server.route("/feed", status(429, {"Retry-After": "soon"}))
    with pytest.raises(TransientError) as caught:
        fetch_url(url, allowed_networks=LOOPBACK)
    assert caught.value.retry_after is None


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError, match="failed"):
        fetch_url(f"http://127.0.0.1:{port}/feed", allowed_networks=LOOPBACK, timeout=2)


def test_unknown_host_is_permanent(resolver) -> None:
    names, _ = resolver  # names it does not know are answered numerically only: EAI_NONAME
    with pytest.raises(PermanentError, match="does not exist"):
        fetch_url("http://nowhere.example/feed.xml")


# --- local feeds ------------------------------------------------------------------------------


def test_local_feed_is_read(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(RSS)
    assert read_local_feed(path) == RSS
    assert read_local_feed(str(path), max_bytes=len(RSS)) == RSS


def test_local_feed_over_the_cap_is_a_permanent_error(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(b"x" * 101)
    with pytest.raises(PermanentError, match="larger than 100 bytes"):
        read_local_feed(path, max_bytes=100)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "file:feed.xml", "http://example.com/rss"])
def test_local_feed_refuses_urls(url: str) -> None:
    with pytest.raises(FeedRefused, match="not URLs"):
        read_local_feed(url)


@pytest.mark.parametrize("name", ["missing.xml", "."])
def test_local_feed_must_be_a_regular_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(PermanentError, match="not a regular file"):
        read_local_feed(tmp_path / name)


# --- cloud-internal and special-purpose addresses ----------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("168.63.129.16", "Azure's WireServer"),
        ("192.0.0.192", "IETF protocol assignment"),  # global to Python 3.11
        ("192.0.0.9", "IETF protocol assignment"),
        ("192.0.2.10", "TEST-NET-1"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.254", "benchmarking"),
        ("198.51.100.7", "TEST-NET-2"),
        ("203.0.113.7", "TEST-NET-3"),
        ("100.64.0.1", "shared address space"),
        ("100.100.100.200", "shared address space"),  # Alibaba Cloud's metadata service
        ("240.0.0.1", "reserved for future use"),
        ("255.255.255.255", "limited broadcast"),
        ("64:ff9b:1::1", "64:ff9b:1::/48"),
        ("2001:1::1", "2001::/23"),
        ("2001:4:112::1", "2001::/23"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("fd00:ec2::254", "unique local"),  # AWS's IPv6 metadata service
        ("fe80::1", "link-local"),
        ("100::1", "discard-only"),
        ("2002:a83f:8110::1", "embeds not a public address: Azure's WireServer"),  # 6to4
        ("64:ff9b::a83f:8110", "embeds not a public address: Azure's WireServer"),  # NAT64
    ],
)
def test_cloud_internal_and_special_purpose_addresses_are_refused_by_name(
    resolver, connects: list, address: str, reason: str
) -> None:
    names, _ = resolver
    names["feeds.example"] = [address]
    with pytest.raises(FeedRefused, match=reason) as refused:
        check_url("http://feeds.example/rss?token=SECRET1", allowed_networks=[])
    assert "FEED_ALLOWED_NETWORKS" in str(refused.value)
    assert "SECRET1" not in str(refused.value)
    assert connects == []


def test_a_special_purpose_network_may_be_allowed_explicitly(resolver, connects: list) -> None:
    names, _ = resolver
    names["lab.example"] = ["198.18.0.5"]
    assert check_url("http://lab.example/rss", allowed_networks=["198.18.0.0/15"]) == (
        "lab.example",
        80,
        "198.18.0.5",
    )
    names["azure.example"] = ["168.63.129.16"]
    with pytest.raises(FeedRefused, match="WireServer"):
        check_url("http://azure.example/rss", allowed_networks=["198.18.0.0/15"])
    assert connects == []


def test_fetch_errors_never_quote_a_feed_urls_secret_query_values(server: FeedServer) -> None:
    server.route("/gone", status(404))
    with pytest.raises(PermanentError) as failed:
        fetch_url(server.url("/gone") + "?token=SECRET2&page=1", allowed_networks=LOOPBACK)
    assert "SECRET2" not in str(failed.value)
    assert "?token=***&page=1" in str(failed.value)
