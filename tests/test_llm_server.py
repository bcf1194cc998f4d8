"""Specification of the fake provider in tests/llm_server.py, through the real clients.

These tests drive the server only through `langchain_openai` (and `openai`/stdlib HTTP
where a client hides what is checked), as our code does; they must stay fast (whole
file in a few seconds) and assert timing only with generous bounds.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, ConfigDict

from tests.llm_server import CATEGORIES, LLMServer

ARTICLE = (
    "Researchers at a university lab unveiled a new AI chip that runs large language "
    "models on a phone. The chip uses a fraction of the power of current designs. "
    "Engineers say the software stack is open source. Startups expect cheaper AI apps "
    "within a year, while analysts warn the chip market is crowded."
)
DEFAULT_FIELDS = ("summary", "key_points", "tags", "category", "label", "synthesis")
PROMPT = f"Summarize the article.\n<<<ARTICLE id=1\n{ARTICLE}\nARTICLE>>>\nBe brief."


class Summary(BaseModel):
    summary: str
    key_points: list[str]
    tags: list[str]
    category: str


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server


def chat(server: LLMServer, **kwargs: Any) -> ChatOpenAI:
    options: dict[str, Any] = {"model": "gpt-4o-mini", "max_retries": 0, **kwargs}
    return ChatOpenAI(base_url=server.base_url, api_key="test", **options)


def embedder(server: LLMServer, **kwargs: Any) -> OpenAIEmbeddings:
    return OpenAIEmbeddings(
        base_url=server.base_url,
        api_key="test",
        model="text-embedding-3-small",
        check_embedding_ctx_length=False,
        **kwargs,
    )


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_plain_chat_answers_with_the_first_40_words_of_the_article(
    server: LLMServer,
) -> None:
    reply = chat(server).invoke(PROMPT)

    assert reply.content == " ".join(ARTICLE.split()[:40])
    assert reply.usage_metadata is not None and reply.usage_metadata["total_tokens"] > 0
    assert server.chat_requests()[0]["messages"][0]["content"] == PROMPT


def test_streaming_yields_the_same_answer_as_invoke(server: LLMServer) -> None:
    pieces = [chunk.content for chunk in chat(server).stream(PROMPT)]

    assert len(pieces) > 2
    assert "".join(map(str, pieces)) == chat(server).invoke(PROMPT).content


def test_json_schema_structured_output_parses_into_the_model(server: LLMServer) -> None:
    model = chat(server).with_structured_output(Summary, method="json_schema")

    result = model.invoke(PROMPT)

    assert isinstance(result, Summary)
    assert result.summary.startswith("Researchers at a university lab")
    assert result.summary.endswith(".") and len(result.summary.split()) <= 40
    assert 2 <= len(result.key_points) <= 3
    assert len(result.tags) == 3 and "chip" in result.tags
    assert result.category == "technology"
    assert server.chat_requests()[0]["response_format"]["type"] == "json_schema"


def test_function_calling_structured_output_parses_into_the_model(
    server: LLMServer,
) -> None:
    model = chat(server).with_structured_output(Summary, method="function_calling")

    result = model.invoke(PROMPT)

    assert isinstance(result, Summary)
    assert result.category == "technology"
    assert server.chat_requests()[0]["tools"][0]["function"]["name"] == "Summary"


def test_json_schema_answer_has_exactly_the_required_properties(
    server: LLMServer,
) -> None:
    class Odd(BaseModel):
        model_config = ConfigDict(extra="forbid")
        label: str
        confidence: float
        sources: list[dict[str, str]]
        note: str

    model = chat(server).with_structured_output(Odd, method="json_schema")

    result = model.invoke(PROMPT)

    assert result == Odd(
        label="Researchers at a university lab unveiled",
        confidence=0,
        sources=[],
        note="n/a",
    )


def test_json_object_mode_answers_with_the_default_fields(server: LLMServer) -> None:
    result = chat(server).with_structured_output(method="json_mode").invoke(PROMPT)

    assert tuple(result) == DEFAULT_FIELDS
    assert result["category"] in CATEGORIES
    assert result["synthesis"].count(".") == 2


def test_responder_replaces_the_default_answer(server: LLMServer) -> None:
    server.responder = lambda body: f"echo {len(body['messages'])}"

    assert chat(server).invoke("hi").content == "echo 1"


def test_similar_texts_embed_closer_than_unrelated_ones(server: LLMServer) -> None:
    vectors = embedder(server).embed_documents(
        [
            "The central bank raised interest rates to fight inflation.",
            "Inflation pushed the central bank to raise interest rates again.",
            "The football team won the championship final on penalties.",
        ]
    )

    assert len(vectors[0]) == 384
    assert abs(cosine(vectors[0], vectors[0]) - 1) < 1e-6
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert vectors[0] == embedder(server).embed_query(
        "The central bank raised interest rates to fight inflation."
    )


def test_embeddings_honour_the_requested_dimensions(server: LLMServer) -> None:
    vector = embedder(server, dimensions=64).embed_query("a short text")

    assert len(vector) == 64
    assert server.requests[-1].body["dimensions"] == 64


def test_models_endpoint_lists_models(server: LLMServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="test")

    assert "gpt-4o-mini" in [model.id for model in client.models.list()]


def test_429_with_retry_after_is_retried_by_the_client(server: LLMServer) -> None:
    server.fail_next(429, retry_after=1)

    reply = chat(server, max_retries=2).invoke(PROMPT)

    first, second = server.requests
    assert reply.content
    # the client waited for Retry-After before its second attempt
    assert second.received_at - first.received_at >= 0.8
    assert second.headers.get("x-stainless-retry-count") == "1"


def test_server_error_raises_when_the_client_does_not_retry(server: LLMServer) -> None:
    server.fail_next(500)

    with pytest.raises(openai.InternalServerError):
        chat(server).invoke(PROMPT)
    assert chat(server).invoke(PROMPT).content  # the fault was used up


def test_hanging_request_times_out_on_the_client(server: LLMServer) -> None:
    server.hang_next()
    started = time.monotonic()

    with pytest.raises(openai.APITimeoutError):
        chat(server, timeout=0.5).invoke(PROMPT)
    assert time.monotonic() - started < 5


def test_stop_does_not_wait_for_hanging_requests() -> None:
    server = LLMServer().start()
    server.hang_next()
    caller = threading.Thread(target=_ignore_errors, args=(chat(server, timeout=30),))
    caller.start()
    while not server.requests:
        time.sleep(0.01)

    started = time.monotonic()
    server.stop()

    assert time.monotonic() - started < 2
    caller.join(timeout=5)
    assert not caller.is_alive()  # the hanging client saw its connection closed


def _ignore_errors(model: ChatOpenAI) -> None:
    try:
        model.invoke(PROMPT)
    except openai.APIError:
        pass


def test_malformed_answer_fails_structured_parsing(server: LLMServer) -> None:
    server.malformed_next(2)
    model = chat(server).with_structured_output(Summary, method="json_schema")

    for _ in range(2):  # prose around JSON, then truncated JSON
        with pytest.raises(ValueError):
            model.invoke(PROMPT)
    assert isinstance(model.invoke(PROMPT), Summary)


def test_malformed_tool_arguments_leave_function_calling_without_a_result(
    server: LLMServer,
) -> None:
    server.malformed_next()
    model = chat(server).with_structured_output(
        Summary, method="function_calling", include_raw=True
    )

    result = model.invoke(PROMPT)

    assert result["parsed"] is None  # langchain drops unparseable tool calls
    assert result["raw"].invalid_tool_calls[0]["name"] == "Summary"


def test_tool_result_gets_a_text_answer(server: LLMServer) -> None:
    model = chat(server).bind_tools([Summary])
    call = model.invoke(PROMPT)
    tool_result = ToolMessage("stored", tool_call_id=call.tool_calls[0]["id"])

    reply = model.invoke([HumanMessage(PROMPT), call, tool_result])

    assert call.tool_calls[0]["name"] == "Summary"
    assert reply.tool_calls == [] and reply.content


def test_max_concurrency_rejects_requests_above_the_limit(server: LLMServer) -> None:
    server.latency = 0.5
    server.max_concurrency = 2
    model = chat(server)

    with ThreadPoolExecutor(5) as pool:
        outcomes = list(pool.map(lambda _: _outcome(model), range(5)))

    assert outcomes.count("rate limited") == server.rejected >= 1
    assert server.peak_concurrency <= 2
    assert outcomes.count("ok") == 5 - server.rejected


def _outcome(model: ChatOpenAI) -> str:
    try:
        model.invoke(PROMPT)
    except openai.RateLimitError:
        return "rate limited"
    return "ok"


def test_latency_is_served_concurrently(server: LLMServer) -> None:
    server.latency = 0.3
    model = chat(server)
    started = time.monotonic()

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: model.invoke(PROMPT), range(20)))

    assert len(replies) == 20
    assert 0.3 <= time.monotonic() - started < 3  # serially it would take 6 s
    assert server.peak_concurrency > 1


def test_holds_200_concurrent_connections(server: LLMServer) -> None:
    server.latency = 1.0
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})

    def post(_: int) -> int:
        request = urllib.request.Request(
            f"{server.base_url}/chat/completions",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status

    started = time.monotonic()
    with ThreadPoolExecutor(200) as pool:
        statuses = list(pool.map(post, range(200)))

    assert statuses == [200] * 200
    assert time.monotonic() - started < 8
    assert server.peak_concurrency >= 100


def test_reset_forgets_requests_and_queued_faults(server: LLMServer) -> None:
    chat(server).invoke("hi")
    server.fail_next(500, count=3)

    server.reset()

    assert server.requests == []
    assert chat(server).invoke("hi").content == "hi"


def test_runs_as_a_process_until_sigterm() -> None:
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "tests.llm_server", "--port", "0"]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
            assert json.load(response)["object"] == "list"
        process.terminate()
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
