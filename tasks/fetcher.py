"""Fetching untrusted URLs safely: the only place feed and page bytes come from.

Owns the URL check (http/https only; the host is resolved once and every address must be public
unless the operator allowed its network), the connection to exactly the address that was checked,
hand-followed redirects (each hop checked again, and offered to an optional hook), one wall-clock
deadline per fetch, a cap on decoded bytes, conditional GET, an optional Content-Type filter
applied before any body byte is read, and the mapping of HTTP outcomes onto `TransientError` and
`PermanentError`. It must not parse feeds or pages, touch storage or queues, or hand any URL to
feedparser (whose own fetcher opens `file://` and local paths): callers get bytes.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, Self

import httpx

from core.errors import (
    ConfigError,
    FeedRefused,
    PermanentError,
    TransientError,
    UnwantedType,
)
from core.redact import redact_text, redact_url
from core.settings import DEFAULT_USER_AGENT, get_settings

USER_AGENT = DEFAULT_USER_AGENT  # the default of the USER_AGENT setting, which every fetch sends
MAX_REDIRECTS = 5

_REDIRECTS = {301, 302, 303, 307, 308}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # two letters at least: "C:\" is a path
_FORBIDDEN_KINDS = (  # first match names the refusal
    ("is_loopback", "a loopback address"),
    ("is_unspecified", "the unspecified address"),
    ("is_link_local", "a link-local address (cloud metadata services live there)"),
    ("is_multicast", "a multicast address"),
)
_LATER_KINDS = (
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
    ("is_site_local", "a site-local address"),
)
# Cloud-internal services on public addresses, and the IETF special-purpose ranges
# (RFC 6890 registries) that `ipaddress` does not flag as non-global on every Python we support
# (3.11 takes 192.0.0.192 for a global address, 3.13 takes parts of 2001::/23 for global).
_SPECIAL_NETWORKS = tuple(
    (ipaddress.ip_network(net), f"not a public address: {words}")
    for net, words in (
        ("168.63.129.16/32", "Azure's WireServer (168.63.129.16), a cloud-internal service"),
        ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
        ("100.64.0.0/10", "shared address space (100.64.0.0/10, carrier-grade NAT)"),
        ("192.0.0.0/24", "an IETF protocol assignment (192.0.0.0/24)"),
        ("192.0.2.0/24", "documentation, TEST-NET-1 (192.0.2.0/24)"),
        ("192.88.99.0/24", "the deprecated 6to4 relay anycast (192.88.99.0/24)"),
        ("198.18.0.0/15", "benchmarking (198.18.0.0/15)"),
        ("198.51.100.0/24", "documentation, TEST-NET-2 (198.51.100.0/24)"),
        ("203.0.113.0/24", "documentation, TEST-NET-3 (203.0.113.0/24)"),
        ("255.255.255.255/32", "reserved, the limited broadcast address"),
        ("240.0.0.0/4", "reserved for future use (240.0.0.0/4)"),
        ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (64:ff9b:1::/48)"),
        ("100::/64", "the discard-only prefix (100::/64)"),
        ("2001::/23", "an IETF protocol assignment (2001::/23)"),
        ("2001:db8::/32", "documentation (2001:db8::/32)"),
        ("3fff::/20", "documentation (3fff::/20)"),
        ("5f00::/16", "segment routing SIDs (5f00::/16)"),
        ("fc00::/7", "private, unique local (fc00::/7)"),
        ("fe80::/10", "link-local (fe80::/10)"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchResult:
    """What one fetch produced; `content` is the decoded body, None when not modified."""

    status: Literal["ok", "not_modified"]
    http_status: int
    content: bytes | None
    etag: str | None
    last_modified: str | None
    final_url: str
    content_type: str | None


@dataclass(frozen=True)
class _Target:
    """A URL that passed the check, and the address it must be fetched from."""

    url: httpx.URL
    host: str
    port: int
    ip: str


def check_url(url: str, allowed_networks: list[str] | None = None) -> tuple[str, int, str]:
    """Check a feed URL and return `(host, port, checked_ip)`, the address to connect to.

    Raises `FeedRefused` for a scheme other than http/https or when any address the host
    resolves to is not public and not inside `allowed_networks` (None: the settings' list);
    `PermanentError` for a host that does not exist, `TransientError` when resolving fails.
    """
    settings = get_settings()
    networks = settings.feed_allowed_networks if allowed_networks is None else allowed_networks
    target = _check(url, _parse_networks(networks), settings.feed_timeout_seconds)
    return target.host, target.port, target.ip


def fetch_url(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    allowed_networks: list[str] | None = None,
    max_bytes: int | None = None,
    timeout: float | None = None,
    accept_types: Sequence[str] | None = None,
    user_agent: str | None = None,
    on_redirect: Callable[[str], None] | None = None,
) -> FetchResult:
    """Fetch a URL within one deadline, following at most 5 checked redirects.

    None for `allowed_networks`, `max_bytes`, `timeout` or `user_agent` means the settings'
    value. `accept_types` (media types such as "text/html") are sent as Accept and checked on
    the response's Content-Type before its body is read; None accepts any type. `on_redirect`
    is called with each redirect target that passed the address check, before it is requested,
    and may raise to stop the fetch. Raises `FeedRefused` for a hostile URL or redirect,
    `TransientError` for timeouts (`FetchTimeout` when the deadline passed), connection failures,
    429 and 5xx (with `retry_after` when the server sent one), `PermanentError` for other 4xx,
    too many redirects, a body larger than `max_bytes` once decoded (`TooLarge`) or a type not
    in `accept_types` (`UnwantedType`).
    """
    settings = get_settings()
    networks = _parse_networks(
        settings.feed_allowed_networks if allowed_networks is None else allowed_networks
    )
    cap = settings.feed_max_bytes if max_bytes is None else max_bytes
    budget = settings.feed_timeout_seconds if timeout is None else timeout
    headers = {
        "User-Agent": user_agent or settings.user_agent,
        "Accept-Encoding": "gzip",  # what _read_body inflates
    }
    accepted = tuple(t.lower() for t in accept_types) if accept_types is not None else None
    if accepted:
        headers["Accept"] = ", ".join(accepted)
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified

    # trust_env=False: a proxy from the environment would resolve the host itself.
    client = httpx.Client(trust_env=False, follow_redirects=False)
    with _Deadline(budget) as deadline, client:
        current = url
        for hop in range(MAX_REDIRECTS + 1):
            target = _check(current, networks, deadline.remaining())
            if hop and on_redirect is not None:
                on_redirect(current)
            outcome = _get(client, target, headers, deadline, cap, accepted)
            if isinstance(outcome, FetchResult):
                if outcome.status == "not_modified" and outcome.etag is None:
                    outcome = replace(outcome, etag=etag)  # the validator still holds
                return outcome
            current = outcome
            client.cookies.clear()  # cookies are keyed by IP here: never carry them across hosts
    raise PermanentError(
        f"{_shown(url)} redirected more than {MAX_REDIRECTS} times; use the final URL"
    )


def read_local_feed(path: str | Path, max_bytes: int | None = None) -> bytes:
    """Read a feed file the operator listed, with the same byte cap as `fetch_url`.

    Takes a filesystem path only: anything that looks like a URL (`file:`, `http:`) raises
    `FeedRefused`.
    """
    if _SCHEME.match(str(path)):
        raise FeedRefused(f"refused {str(path)!r}: local feeds are plain paths, not URLs")
    cap = get_settings().feed_max_bytes if max_bytes is None else max_bytes
    file = Path(path)
    if not file.is_file():
        raise PermanentError(f"local feed {file} is not a regular file; fix the feeds list")
    with file.open("rb") as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise PermanentError(f"feed larger than {cap} bytes: {file}")
    return data


def _shown(url: object) -> str:
    """A URL as it may appear in an error: password and secret query values masked."""
    return redact_url(str(url))


def _check(url: str, networks: list[Network], resolve_timeout: float) -> _Target:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FeedRefused(
            f"refused {_shown(url)!r}: not a valid URL ({redact_text(str(exc))})"
        ) from exc
    if not parsed.scheme:
        raise FeedRefused(
            f"refused {_shown(url)!r}: no scheme; write the full http:// or https:// URL"
        )
    if parsed.scheme not in _DEFAULT_PORTS:
        raise FeedRefused(
            f"refused {_shown(url)!r}: the {parsed.scheme}: scheme is refused, use http(s)",
            brief=f"refused: the {parsed.scheme}: scheme",
        )
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise FeedRefused(f"refused {_shown(url)!r}: no host")
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]

    addresses = _resolve(host, port, resolve_timeout)
    for address in addresses:
        why = _refusal(address, networks)
        if why:
            where = str(address) if host.strip("[]") == str(address) else f"{host} ({address})"
            raise FeedRefused(
                f"refused {_shown(url)!r}: {host} resolves to {address}, {why}; add its network "
                "to FEED_ALLOWED_NETWORKS only if you trust this feed",
                brief=f"refused: {where}, {why}",
            )
    first = addresses[0]
    connect_to = first.ipv4_mapped if isinstance(first, ipaddress.IPv6Address) else None
    return _Target(parsed, host, port, str(connect_to or first))


def _resolve(host: str, port: int, timeout: float) -> list[Address]:
    """The host's addresses, from one lookup that cannot outlive the fetch's deadline."""
    answer: list[Any] = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)

    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not answer:
        raise TransientError(f"resolving {host} took longer than the fetch's {timeout:.1f} s left")
    if isinstance(answer[0], socket.gaierror) and answer[0].errno == socket.EAI_NONAME:
        raise PermanentError(
            f"host {host} does not exist; check the feed URL", brief=f"host {host} does not exist"
        )
    if isinstance(answer[0], OSError):
        raise TransientError(f"could not resolve {host}: {answer[0]}")
    addresses = [
        ipaddress.ip_address(sockaddr[0])
        for family, _, _, _, sockaddr in answer[0]
        if family in (socket.AF_INET, socket.AF_INET6)
    ]
    if not addresses:
        raise PermanentError(f"host {host} has no IPv4 or IPv6 address")
    return addresses


def _refusal(address: Address, networks: list[Network]) -> str | None:
    """Why `address` may not be fetched, or None when it may."""
    if any(address in network for network in networks):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:  # the IPv4 address is where the packets go
            why = _refusal(mapped, networks)
            return f"which maps to {why}" if why else None
        embedded = [address.sixtofour, (address.teredo or (None, None))[1]]
        if address in _NAT64:  # the gateway forwards to the IPv4 address in the low 32 bits
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        for inner in filter(None, embedded):  # allowances are for addresses we connect to
            why = _refusal(inner, [])
            if why:
                return f"which embeds {why}"
    for flag, words in _FORBIDDEN_KINDS:
        if getattr(address, flag, False):
            return words
    for network, words in _SPECIAL_NETWORKS:
        if address.version == network.version and address in network:
            return words
    for flag, words in _LATER_KINDS:
        if getattr(address, flag, False):
            return words
    return None if address.is_global else "not a public address"


def _parse_networks(networks: list[str]) -> list[Network]:
    try:
        return [ipaddress.ip_network(net, strict=False) for net in networks]
    except ValueError as exc:
        raise ConfigError(f"{exc}; FEED_ALLOWED_NETWORKS takes CIDRs like 10.0.0.0/8") from exc


def _get(
    client: httpx.Client,
    target: _Target,
    headers: dict[str, str],
    deadline: _Deadline,
    cap: int,
    accepted: tuple[str, ...] | None,
) -> FetchResult | str:
    """One request to the checked address: a result, or the next URL to follow."""
    request = client.build_request(
        "GET",
        target.url.copy_with(host=target.ip),
        headers={**headers, "Host": target.url.netloc.decode("ascii")},
        timeout=deadline.remaining(),
        extensions={"sni_hostname": target.host, "trace": deadline.trace},
    )
    try:
        response = client.send(request, stream=True)
        try:
            return _outcome(response, target, deadline, cap, accepted)
        finally:
            response.close()
    except httpx.TransportError as exc:
        if deadline.expired:
            raise deadline.error(_shown(target.url)) from exc
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        raise TransientError(
            f"fetching {_shown(target.url)} {kind}: {redact_text(repr(exc))}"
        ) from exc


def _outcome(
    response: httpx.Response,
    target: _Target,
    deadline: _Deadline,
    cap: int,
    accepted: tuple[str, ...] | None,
) -> FetchResult | str:
    status = response.status_code
    if status in _REDIRECTS:
        location = response.headers.get("Location")
        if not location:
            raise PermanentError(
                f"{_shown(target.url)} answered {status} without a Location header",
                http_status=status,
            )
        return str(target.url.join(location))
    if status in (429, 503):
        retry_after = _retry_after(response.headers.get("Retry-After"))
        raise TransientError(
            f"{_shown(target.url)} answered {status}; try again later",
            retry_after,
            http_status=status,
        )
    if status >= 500:
        raise TransientError(
            f"{_shown(target.url)} answered {status} (server error)", http_status=status
        )
    if status >= 400:
        raise PermanentError(f"{_shown(target.url)} answered {status}; check the feed URL", status)
    if status != 304 and not 200 <= status < 300:
        raise PermanentError(
            f"{_shown(target.url)} answered {status}, which a feed fetch cannot use",
            http_status=status,
        )

    content_type = response.headers.get("Content-Type")
    if status != 304 and accepted is not None:
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type not in accepted:
            raise UnwantedType(
                f"{target.url} sent {media_type or 'no Content-Type'}, not one of "
                f"{', '.join(accepted)}",
                media_type or None,
                status,
            )
    content = None if status == 304 else _read_body(response, cap, deadline, target.url)
    return FetchResult(
        status="not_modified" if status == 304 else "ok",
        http_status=status,
        content=content,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        final_url=str(target.url),
        content_type=content_type,
    )


def _read_body(response: httpx.Response, cap: int, deadline: _Deadline, url: httpx.URL) -> bytes:
    """The decoded body, stopping as soon as it passes `cap` (a gzip bomb stops early).

    Inflates by hand instead of with `iter_bytes()`: httpx inflates each 64 KiB read whole, up to
    ~64 MiB of zeros at once, whereas `max_length` keeps every step within the cap.
    """
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
        raise PermanentError(
            f"{_shown(url)} sent Content-Encoding {encoding!r}, which we do not accept"
        )
    inflate = None if encoding in ("identity", "") else zlib.decompressobj(32 + zlib.MAX_WBITS)
    chunks: list[bytes] = []
    size = 0
    for pending in response.iter_raw():
        while pending:
            if inflate is None:
                data, pending = pending, b""
            else:
                try:
                    data = inflate.decompress(pending, cap + 1 - size)
                except zlib.error as exc:
                    raise PermanentError(
                        f"{_shown(url)} sent a body that does not decode: {exc}"
                    ) from exc
                pending = inflate.unconsumed_tail
            size += len(data)
            if size > cap:
                raise PermanentError(
                    f"feed larger than {cap} bytes: {_shown(url)}", brief=f"larger than {cap} bytes"
                )
            chunks.append(data)
    if deadline.expired:  # the watchdog's shutdown looks like the end of an unsized body
        raise deadline.error(_shown(url))
    return b"".join(chunks)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _Deadline:
    """One fetch's wall-clock budget; when it runs out, every socket the fetch opened is shut down.

    Per-read timeouts alone let a server that trickles a byte a second go on forever; shutting
    the socket down from a timer ends a blocked read at once, in any phase (TLS, headers, body).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._fired = False
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self._end

    def remaining(self) -> float:
        """Seconds left; raises the deadline's `TransientError` when none are."""
        if self.expired:
            raise self.error()
        return self._end - time.monotonic()

    def error(self, url: object = "the feed") -> TransientError:
        return TransientError(
            f"fetching {url} did not finish within {self.seconds:g} s; the server is too slow "
            "(raise FEED_TIMEOUT_SECONDS if this feed is just large)",
            brief=f"timed out after {self.seconds:g} s",
        )

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx `trace` hook: remember each socket as soon as it is connected."""
        if event.endswith(("connect_tcp.complete", "start_tls.complete")):
            sock = info["return_value"].get_extra_info("socket")
            with self._lock:
                self._sockets.append(sock)
                if self._fired:
                    _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self._fired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed, or detached by the TLS wrapper
        pass
