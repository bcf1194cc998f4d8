"""A loopback HTTP server for tests that fetch feeds: routes set per test, every hit counted.

`FeedServer` binds a loopback address (127.0.0.1 by default, or ::1, 127.0.0.2) on port 0 and
serves from a daemon thread. Each route is a responder, a function that writes the whole
response through the request handler; the factories below build the hostile ones (trickling,
endless, gzip bombs). `connections` counts accepted TCP connections and `hits` requests per path,
so a test can prove that no request reached a refused address. It never listens beyond loopback.
"""

from __future__ import annotations

import ssl
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import AF_INET6
from typing import Any, Self

Responder = Callable[["_Handler"], None]


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    client_ip: str


class FeedServer:
    """A threaded HTTP server on loopback with per-test routes; use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.routes: dict[str, Responder] = {}
        self.hits: Counter[str] = Counter()
        self.seen: list[Seen] = []
        self.connections = 0
        self.stopping = threading.Event()
        self._httpd = _HTTPServer(self, host, tls)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def route(self, path: str, responder: Responder) -> str:
        """Serve `path` with `responder`; returns the route's URL."""
        self.routes[path] = responder
        return self.url(path)

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()  # ends trickling and endless responders
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _HTTPServer(ThreadingHTTPServer):
    block_on_close = False  # a responder stuck on a dead client must not hang the test

    def __init__(self, owner: FeedServer, host: str, tls: ssl.SSLContext | None) -> None:
        if ":" in host:
            self.address_family = AF_INET6
        self.owner = owner
        self.tls = tls
        super().__init__((host, 0), _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.owner.connections += 1
        return True

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on purpose (caps, deadlines); tests assert on what they saw


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        owner.hits[path] += 1
        owner.seen.append(Seen(path, dict(self.headers.items()), self.client_address[0]))
        owner.routes.get(path, status(404))(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def send(self, code: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers and body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def feed(
    body: bytes,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    content_type: str = "application/rss+xml",
) -> Responder:
    """A feed with optional validators; answers 304 when the client's validator matches."""

    def respond(handler: _Handler) -> None:
        headers = {"Content-Type": content_type}
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = last_modified
        matches_etag = etag and handler.headers.get("If-None-Match") == etag
        matches_date = last_modified and handler.headers.get("If-Modified-Since") == last_modified
        if matches_etag or matches_date:
            handler.send(304, headers)
        else:
            handler.send(200, headers, body)

    return respond


def redirect(location: str, code: int = 302) -> Responder:
    """A redirect to `location` (absolute, relative, or hostile)."""
    return lambda handler: handler.send(code, {"Location": location})


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Responder:
    """A fixed status, e.g. 404, or 429 with Retry-After."""
    return lambda handler: handler.send(code, headers or {}, body)


def encoded(body: bytes, encoding: str) -> Responder:
    """`body` sent with Content-Encoding `encoding`: gzip and deflate are compressed for real."""
    compress = {
        "gzip": lambda data: zlib.compress(data, wbits=31),
        "deflate": zlib.compress,  # HTTP's "deflate" is the zlib format
    }.get(encoding, lambda data: data)
    return lambda handler: handler.send(200, {"Content-Encoding": encoding}, compress(body))


def trickle(
    interval: float = 0.2,
    *,
    in_headers: bool = False,
    limit: float = 10.0,
    content_type: str = "application/rss+xml",
) -> Responder:
    """One byte every `interval`, in the body or in the headers.

    Hangs up after `limit` seconds, so a client without a deadline fails its test, not hangs it.
    """

    def respond(handler: _Handler) -> None:
        if in_headers:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        else:
            handler.send_response(200)
            handler.send_header("Content-Type", content_type)
            handler.end_headers()
        end = time.monotonic() + limit
        while not handler.server.owner.stopping.wait(interval) and time.monotonic() < end:
            handler.wfile.write(b"a")
            handler.wfile.flush()

    return respond


def endless(limit: int = 256 * 2**20) -> Responder:
    """A body with no length, sent as fast as the client reads.

    Hangs up after `limit` bytes, so a client without a cap fails its test, not eats all memory.
    """

    def respond(handler: _Handler) -> None:
        handler.send_response(200)
        handler.end_headers()
        block = b"<item/>" * 9362  # about 64 KiB
        for _ in range(limit // len(block)):
            if handler.server.owner.stopping.is_set():
                return
            handler.wfile.write(block)

    return respond


def sized(size: int, content_type: str | None = None) -> Responder:
    """A body of exactly `size` bytes with its Content-Length, sent in 64 KiB writes."""

    def respond(handler: _Handler) -> None:
        handler.send_response(200)
        if content_type:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        block = b"x" * 65536
        for start in range(0, size, len(block)):
            handler.wfile.write(block[: min(len(block), size - start)])

    return respond


def gzip_bomb(decoded_size: int = 1 << 30) -> Responder:
    """`decoded_size` zero bytes, gzip-compressed on the fly (1 GiB is about 1 MB on the wire)."""

    def respond(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Encoding", "gzip")
        handler.end_headers()
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
        zeros = bytes(1 << 20)
        pending = b""
        for _ in range(decoded_size // len(zeros)):
            if handler.server.owner.stopping.is_set():
                return
            pending += compressor.compress(zeros)
            if len(pending) >= 128 * 1024:  # big writes: the client reads full 64 KiB chunks
                handler.wfile.write(pending)
                pending = b""
        handler.wfile.write(pending + compressor.flush())

    return respond


def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll `predicate` until true or `timeout`; the server counts from its own threads."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True
