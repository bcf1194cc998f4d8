"""A fake OpenAI-compatible provider on loopback, for tests and benchmarks only.

This module owns a test double of the LLM provider: a stdlib HTTP server that answers
`POST /v1/chat/completions`, `POST /v1/embeddings` and `GET /v1/models` the way OpenAI
does, so our code is exercised through the real `openai` / `langchain_openai` clients
with `base_url=server.base_url`. Answers are deterministic and built from the request
(the article in the last user message); faults (error statuses, hangs, malformed output,
latency, a concurrency limit) can be scripted at any time from any thread. It must never
be imported by production code, never call a real provider, and never depend on anything
beyond the standard library.

Run it as a process for benchmarks and manual trials:
    python -m tests.llm_server --port 8090 --latency 1.0 --max-concurrency 32
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import hashlib
import json
import math
import re
import signal
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

DEFAULT_MODEL = "gpt-4o-mini"
MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "text-embedding-3-large")
_KEYWORDS = """
technology: software ai artificial intelligence computer chip chips app apps startup
    internet cloud data algorithm robot robots smartphone cyber tech model models llm
    llms google apple microsoft openai code developer developers
science: research researchers scientists scientist study physics chemistry biology
    space nasa planet planets telescope climate species experiment quantum astronomers
    discovery fossil genome
business: market markets company companies shares stock stocks investors revenue profit
    earnings economy economic bank banks inflation trade deal ceo billion million sales
health: health hospital hospitals patients patient disease vaccine vaccines doctors
    medical cancer virus covid treatment drug drugs clinical mental
politics: election elections government minister president parliament senate congress
    vote voters policy law party campaign democrats republicans legislation political
world: war country countries international united nations border refugees military
    foreign embassy treaty conflict troops ceasefire
sports: match team teams league season player players coach goal goals championship
    tournament cup olympic olympics football soccer tennis basketball win won score
culture: film films movie movies music album art artist artists museum book books novel
    festival theatre theater culture fashion television series
"""
_STOPWORDS_TEXT = """
a about above after again against all also am an and any are as at be because been
before being below between both but by can could did do does doing down during each few
for from further had has have having he her here hers herself him himself his how i if
in into is it its itself just me more most my myself new no nor not now of off on once
only or other our ours out over own per said same says she should so some such than that
the their theirs them themselves then there these they this those through to too under
until up very via was we were what when where which while who whom why will with would
you your yours
"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_WORD = re.compile(r"[a-z][a-z0-9'-]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_EMPTY = "The article is empty."

Responder = Callable[[dict[str, Any]], str]


def _keyword_table(text: str) -> dict[str, frozenset[str]]:
    """`name: words...` blocks (continuation lines indented) -> {name: words}."""
    table: dict[str, frozenset[str]] = {}
    for block in re.split(r"\n(?=\S)", text.strip()):
        name, words = block.split(":", 1)
        table[name] = frozenset(words.split())
    return table


CATEGORY_KEYWORDS = _keyword_table(_KEYWORDS)  # ordered: the first category wins a tie
CATEGORIES = (*CATEGORY_KEYWORDS, "other")


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the decoded JSON body; None when absent or not JSON
    received_at: float  # time.monotonic() when the request was read


@dataclasses.dataclass(frozen=True)
class _Fault:
    kind: Literal["fail", "hang", "malformed"]
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    variant: int = 0  # malformed shape: odd = prose around JSON, even = truncated JSON


# --- Deterministic answers built from the request ---------------------------------------


def article_text(body: dict[str, Any]) -> str:
    """The article in the request's last user message: the lines between the first line
    starting with `<<<ARTICLE` and the line `ARTICLE>>>` if present, else the message."""
    messages = body.get("messages") or []
    users = [m for m in messages if m.get("role") == "user"] or messages[-1:]
    lines = (_message_text(users[-1]) if users else "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("<<<ARTICLE")]
    if not starts:
        return "\n".join(lines).strip()
    ends = [i for i in range(starts[0] + 1, len(lines)) if lines[i].strip() == "ARTICLE>>>"]
    return "\n".join(lines[starts[0] + 1 : ends[0] if ends else len(lines)]).strip()


def default_answer(text: str) -> dict[str, Any]:
    """The structured answer for an article: summary, key points, tags and so on."""
    words = text.split()
    sentences = _sentences(text)
    key_points = [_clip(s, 20) for s in sentences[:3]]
    if len(key_points) < 2:  # one long sentence: cut its words into points instead
        chunks = [words[i : i + 12] for i in (12, 24)]
        key_points += [_clip(" ".join(chunk), 12) for chunk in chunks if chunk]
    return {
        "summary": _clip(text, 40) if words else _EMPTY,
        "key_points": key_points[:3] or [_EMPTY],
        "tags": _tags(text),
        "category": _category(text),
        "label": " ".join(words[:6]).rstrip(".,;:!?") or "Untitled",
        "synthesis": " ".join(sentences[:2]) or _EMPTY,
    }


def plain_answer(text: str) -> str:
    """The plain-text answer: the first 40 words of the article."""
    return " ".join(text.split()[:40]) or _EMPTY


def embed(text: str, dims: int) -> list[float]:
    """A unit vector of hashed word counts, so texts sharing words point the same way."""
    vector = [0.0] * dims
    words = _content_words(text) or text.lower().split()
    for word, count in collections.Counter(words).items():
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest, "big")
        vector[bucket % dims] += count if bucket >> 63 else -count
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        return [1.0] + [0.0] * (dims - 1)
    return [v / norm for v in vector]


def fill_schema(schema: dict[str, Any], known: dict[str, Any]) -> Any:
    """An object for a JSON schema with exactly its required properties (else all its
    properties; `known` itself when it has none), values from `known` where the type
    fits, else placeholders: "n/a" for strings, [] for arrays, 0 for numbers."""
    if not _resolve(schema, schema).get("properties"):
        return dict(known)
    return _fill_value("", schema, schema, known)


def _fill_value(name: str, schema: dict[str, Any], root: dict[str, Any], known: dict) -> Any:
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return known[name] if known.get(name) in schema["enum"] else schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties") or {}
        names = schema.get("required") or list(properties)
        inner = known if not name else {}
        return {n: _fill_value(n, properties.get(n, {}), root, inner) for n in names}
    value = known.get(name)
    fits = {"string": str, "array": list, "integer": int, "number": (int, float)}
    if value is not None and isinstance(value, fits.get(kind, ())):
        item_kind = _resolve(schema.get("items") or {}, root).get("type", "string")
        if kind != "array" or item_kind == "string":
            return value
    placeholders = {"string": "n/a", "array": [], "integer": 0, "number": 0}
    return placeholders.get(kind, False if kind == "boolean" else None)


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s; take the first non-null branch of anyOf/oneOf/allOf."""
    for _ in range(32):  # a bound, in case of a cyclic $ref
        if "$ref" in schema:
            target: Any = root
            for part in schema["$ref"].removeprefix("#/").split("/"):
                target = target.get(part, {})
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        elif branches := schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf"):
            schema = next((b for b in branches if b.get("type") != "null"), branches[0])
        else:
            break
    return schema


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _clip(text: str, max_words: int) -> str:
    """The first `max_words` words of text, ending with a period."""
    clipped = " ".join(text.split()[:max_words]).rstrip(" ,;:-")
    return clipped if clipped.endswith((".", "!", "?")) else clipped + "."


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(" ".join(text.split())) if s]


def _content_words(text: str) -> list[str]:
    words = (w.strip("'-") for w in _WORD.findall(text.lower()))
    return [w for w in words if w not in _STOPWORDS]


def _tags(text: str) -> list[str]:
    counts = collections.Counter(w for w in _content_words(text) if len(w) >= 3)
    tags = [word for word, _ in counts.most_common(3)]  # ties keep first-seen order
    return (tags + [t for t in ("news", "general", "article") if t not in tags])[:3]


def _category(text: str) -> str:
    words = _content_words(text)
    scores = {c: sum(w in kws for w in words) for c, kws in CATEGORY_KEYWORDS.items()}
    best = max(scores, key=lambda c: scores[c])
    return best if scores[best] > 0 else "other"


# --- OpenAI response shapes -------------------------------------------------------------


def chat_answer(
    body: dict[str, Any], responder: Responder | None = None, malformed: int = 0
) -> tuple[str | None, dict[str, Any] | None]:
    """(content, tool call) answering a chat request; exactly one of the two is set.

    Structured requests (`response_format` json_schema/json_object, or function tools)
    get JSON; others get plain text. `malformed` > 0 spoils the answer (odd: prose, even:
    truncated JSON); a `responder` replaces the answer (the tool arguments for tools).
    """
    text = article_text(body)
    tool = _forced_tool(body)
    response_format = body.get("response_format") or {}
    json_format = response_format.get("type") in ("json_schema", "json_object")
    if malformed and (tool is not None or json_format):
        answer = json.dumps(default_answer(text))
        if malformed % 2:
            answer = f"Sure! Here is the summary: {answer}"
        else:
            answer = answer[: len(answer) // 2]
    elif malformed:
        answer = f"Sure! Here is the summary: {plain_answer(text)}"
    elif responder is not None:
        answer = responder(body)
    elif tool is not None:
        schema = tool.get("parameters") or {}
        answer = json.dumps(fill_schema(schema, default_answer(text)))
    elif json_format:
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        answer = json.dumps(fill_schema(schema, default_answer(text)))
    else:
        answer = plain_answer(text)
    if tool is None:
        return answer, None
    function = {"name": tool.get("name", "tool"), "arguments": answer}
    return None, {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": function,
    }


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function to call: the one `tool_choice` names, else the first. None when the
    choice is "none", or when it is "auto" (or unset) and the last message is a tool
    result, so an agent loop gets a final text answer as it would from a real model."""
    tools = [
        t.get("function") or {} for t in body.get("tools") or [] if t.get("type") == "function"
    ]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    messages = body.get("messages") or [{}]
    if choice in (None, "auto") and messages[-1].get("role") == "tool":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return next((t for t in tools if t.get("name") == name), tools[0])
    return tools[0]


def _usage(body: dict[str, Any], content: str | None, tool_call: dict | None) -> dict:
    prompt = sum(len(_message_text(m).split()) for m in body.get("messages") or [])
    output = content if tool_call is None else tool_call["function"]["arguments"]
    completion = len((output or "").split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion(body: dict[str, Any], content: str | None, tool_call: dict | None) -> dict:
    """A `chat.completion` object carrying the answer."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_call is not None:
        message["tool_calls"] = [tool_call]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": "stop" if tool_call is None else "tool_calls",
    }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
        "system_fingerprint": "fp_llm_server",
        "choices": [choice],
        "usage": _usage(body, content, tool_call),
    }


def completion_chunks(
    body: dict[str, Any], content: str | None, tool_call: dict | None
) -> Iterator[dict]:
    """A minimal `chat.completion.chunk` stream carrying the same answer."""
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict:
        choice = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        return {**base, "choices": [choice]}

    yield chunk({"role": "assistant", "content": "" if tool_call is None else None})
    if tool_call is not None:
        yield chunk({"tool_calls": [{"index": 0, **tool_call}]})
    for piece in re.findall(r"\S+\s*", content or ""):
        yield chunk({"content": piece})
    yield chunk({}, "stop" if tool_call is None else "tool_calls")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield {**base, "choices": [], "usage": _usage(body, content, tool_call)}


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "llm-server"}


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_exceeded"
    return "server_error" if status >= 500 else "invalid_request_error"


# --- The server -------------------------------------------------------------------------


class LLMServer:
    """An OpenAI-compatible server on loopback whose behaviour tests can script.

    Knobs (`latency`, `max_concurrency`, `responder`, the `*_next` faults) apply to chat
    completions and may be changed at any time from any thread. Queued faults are served
    in the order they were queued, one per admitted chat completion; a concurrency
    rejection does not use one up. Failures answer at once, without the latency.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        max_concurrency: int | None = None,
        embedding_dims: int = 384,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._latency = max(0.0, float(latency))
        self._max_concurrency = max_concurrency
        self._responder: Responder | None = None
        self._requests: list[RecordedRequest] = []
        self._faults: collections.deque[_Fault] = collections.deque()
        self._in_flight = 0
        self._peak = 0
        self._rejected = 0
        self._malformed_served = 0
        self._connections: set[socket.socket] = set()
        self.embedding_dims = embedding_dims
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.llm = self
        self._thread: threading.Thread | None = None

    # lifecycle

    @property
    def base_url(self) -> str:
        """The URL to give a client as `base_url`: `http://127.0.0.1:PORT/v1`."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> Self:
        """Serve from a background daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"llm-server-{self.base_url}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections; hanging handlers are released (they
        return without answering), never waited for."""
        self._stopped.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # knobs

    @property
    def latency(self) -> float:
        """Seconds each chat completion waits before answering."""
        with self._lock:
            return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = max(0.0, float(seconds))

    @property
    def max_concurrency(self) -> int | None:
        """Chat completions in flight above this get 429 with `Retry-After: 1`."""
        with self._lock:
            return self._max_concurrency

    @max_concurrency.setter
    def max_concurrency(self, limit: int | None) -> None:
        with self._lock:
            self._max_concurrency = limit

    @property
    def responder(self) -> Responder | None:
        """Optional hook: request body -> assistant content (tool arguments for tools)."""
        with self._lock:
            return self._responder

    @responder.setter
    def responder(self, hook: Responder | None) -> None:
        with self._lock:
            self._responder = hook

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `count` chat completions with an OpenAI-style error; with
        `retry_after`, also send `Retry-After` (whole seconds) and `retry-after-ms`."""
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error (400-599), got {status}")
        self._queue(count, _Fault("fail", status=status, retry_after=retry_after))

    def hang_next(self, count: int = 1, seconds: float = 3600) -> None:
        """Accept the next `count` chat completions and never answer: after `seconds`
        (or at stop()) the connection is closed without a response."""
        self._queue(count, _Fault("hang", seconds=seconds))

    def malformed_next(self, count: int = 1) -> None:
        """Answer the next `count` chat completions with 200 and content that is not the
        requested JSON: alternately prose around the JSON, and truncated JSON."""
        self._queue(count, _Fault("malformed"))

    def _queue(self, count: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    def reset(self) -> None:
        """Forget recorded requests, queued faults, rejections and the peak so far."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._rejected = 0
            self._peak = self._in_flight

    # observations

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    def chat_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies sent to /v1/chat/completions, oldest first."""
        return [r.body for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def in_flight(self) -> int:
        """Chat completions being served right now (hung ones included)."""
        with self._lock:
            return self._in_flight

    @property
    def peak_concurrency(self) -> int:
        """The most chat completions admitted and in flight at once."""
        with self._lock:
            return self._peak

    @property
    def rejected(self) -> int:
        """How many chat completions `max_concurrency` refused."""
        with self._lock:
            return self._rejected

    # called from handler threads

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _admit(self) -> bool:
        with self._lock:
            limit = self._max_concurrency
            if limit is not None and self._in_flight >= limit:
                self._rejected += 1
                return False
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            return True

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults.popleft()
            if fault.kind == "malformed":
                self._malformed_served += 1
                fault = dataclasses.replace(fault, variant=self._malformed_served)
            return fault

    def _track(self, conn: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # the listen backlog; the default 5 drops bursts of connects
    llm: LLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or disconnect mid-request are expected here


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # headers and body leave at once on reused connections
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client's pool expects
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.llm._track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.llm._track(self.connection, open_=False)
        try:
            super().finish()
        except OSError:
            pass  # the client is gone

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and benchmarks read .requests instead

    def do_GET(self) -> None:
        self._record(None)
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [_model(m) for m in MODELS]})
        elif path.startswith("/v1/models/"):
            self._send_json(200, _model(path.removeprefix("/v1/models/")))
        else:
            self._send_error(404, f"Unknown path {self.path}.", "invalid_request_error")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(body)
        path = self.path.split("?")[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/embeddings"):
            self._send_error(404, f"Unknown path {self.path}.", "invalid_request_error")
        elif not isinstance(body, dict):
            self._send_error(400, "The body must be a JSON object.", "invalid_request_error")
        elif path == "/v1/chat/completions":
            self._chat(body)
        else:
            self._embeddings(body)

    def _record(self, body: Any) -> None:
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=dict(self.headers.items()),
            body=body,
            received_at=time.monotonic(),
        )
        self.server.llm._record(request)

    def _chat(self, body: dict[str, Any]) -> None:
        llm = self.server.llm
        if not llm._admit():
            message = "Too many concurrent requests."
            self._send_error(429, message, "rate_limit_exceeded", retry_after=1)
            return
        released = False
        try:
            fault = llm._next_fault()
            if fault is not None and fault.kind == "fail":
                message = f"Injected failure {fault.status}."
                kind = _error_type(fault.status)
                self._send_error(fault.status, message, kind, fault.retry_after)
                return
            if fault is not None and fault.kind == "hang":
                llm._stopped.wait(fault.seconds)
                self.close_connection = True
                return
            if llm._stopped.wait(llm.latency):  # stopping: drop the request
                self.close_connection = True
                return
            variant = fault.variant if fault is not None else 0
            content, tool_call = chat_answer(body, llm.responder, variant)
            # The answer is decided: stop counting it as in flight before the client can see
            # it, so a client that sends its next request on receipt is never double-counted.
            llm._release()
            released = True
            if body.get("stream"):
                chunks = completion_chunks(body, content, tool_call)
                events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
                self._send(200, (events + "data: [DONE]\n\n").encode(), "text/event-stream")
            else:
                self._send_json(200, completion(body, content, tool_call))
        finally:
            if not released:
                llm._release()

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
        ):
            inputs = [inputs]  # one string, or one list of token ids
        if not isinstance(inputs, list) or not inputs:
            message = "'input' must be a string or a non-empty list."
            self._send_error(400, message, "invalid_request_error")
            return
        texts = [" ".join(map(str, x)) if isinstance(x, list) else str(x) for x in inputs]
        dims = int(body.get("dimensions") or self.server.llm.embedding_dims)
        data = []
        for index, text in enumerate(texts):
            vector: Any = embed(text, dims)
            if body.get("encoding_format") == "base64":  # the openai client's default
                vector = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        model = body.get("model") or "text-embedding-3-small"
        self._send_json(200, {"object": "list", "data": data, "model": model, "usage": usage})

    def _send_error(
        self, status: int, message: str, kind: str, retry_after: float | None = None
    ) -> None:
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = str(math.ceil(retry_after))
            headers["retry-after-ms"] = str(int(retry_after * 1000))
        error = {"message": message, "type": kind, "param": None, "code": kind}
        self._send_json(status, {"error": error}, headers)

    def _send_json(self, status: int, payload: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (its timeout) or the server is stopping
            self.close_connection = True


# --- Command line -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Print the base URL, then serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.llm_server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat answer")
    parser.add_argument("--max-concurrency", type=int, default=None)
    parser.add_argument("--embedding-dims", type=int, default=384)
    args = parser.parse_args(argv)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    server = LLMServer(
        latency=args.latency,
        max_concurrency=args.max_concurrency,
        embedding_dims=args.embedding_dims,
        host=args.host,
        port=args.port,
    )
    with server:
        print(server.base_url, flush=True)
        while not done.wait(0.5):
            pass


if __name__ == "__main__":
    main()
