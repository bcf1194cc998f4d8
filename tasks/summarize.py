"""Summaries: the LLM path (structured, validated, repaired once) and the extractive fallback.

`summarize_article` is the thin Celery task: it re-reads the article, skips content that already
has a current summary, and upserts the result. The logic lives in plain functions:
`extractive_summary` ranks sentences by centrality on their embeddings (boilerplate such as
bylines and newsletter pleas is dropped first); `llm_summary` asks the chat model for a JSON
object validated with pydantic. Article text only travels inside the prompt's delimited slot.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator

import prompts
from core.errors import TransientError
from core.settings import get_settings
from vectorstore import DatabaseUnavailable, connection
from vectorstore import articles as store

from .app import app
from .providers import Embedder, get_chat_model, get_embedder, invoke_limited

log = logging.getLogger(__name__)

CATEGORIES = (
    "technology", "science", "business", "politics", "world", "health", "sports", "culture",
    "other",
)  # fmt: skip

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)]*\s+(?=[\"'“‘(¿¡]?[A-ZÀ-Ý0-9])")
_BOILERPLATE = re.compile(
    r"subscribe|newsletter|sign up|sign-up|click here|all rights reserved|follow us|"
    r"share this|advertisement|cookies?\b|read more|staff writer|©|copyright|"
    r"download (our|the) app|support (our|independent) journalism|"
    r"this story (was|has been) updated",
    re.IGNORECASE,
)
_BYLINE = re.compile(r"^(by|von|por|par)\s+[A-Z][\w.'-]*(\s+[A-Z][\w.'-]*){0,3}\s*($|[,|—–-])")


def split_sentences(text: str) -> list[str]:
    """Sentences of a plain-text article, bylines and separators split off."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n", text):
        for chunk in re.split(r"\s+[|•·]\s+", paragraph.strip()):
            sentences.extend(s.strip() for s in _SENTENCE_END.split(chunk) if s.strip())
    return sentences


def is_boilerplate(sentence: str) -> bool:
    """A byline, a newsletter plea or another sentence that is about the page, not the news."""
    return (
        bool(_BOILERPLATE.search(sentence) or _BYLINE.match(sentence)) or len(sentence.split()) < 4
    )


def extractive_summary(title: str, body: str, embedder: Embedder, max_words: int = 60) -> str:
    """The most central sentences, in their original order, within `max_words`.

    Centrality is each sentence's mean cosine similarity to the other sentences and to the
    title (a LexRank-style degree score), so the summary is what the article keeps saying,
    not whatever it opens with.
    """
    sentences = [s for s in split_sentences(body) if not is_boilerplate(s)]
    if not sentences:
        words = body.split()
        return " ".join(words[:max_words])
    if len(sentences) == 1:
        return _clip(sentences[0], max_words)
    vectors = embedder.embed_batch([title, *sentences])
    title_vec, sent_vecs = vectors[0], vectors[1:]
    sim = sent_vecs @ sent_vecs.T
    np.fill_diagonal(sim, 0.0)
    centrality = sim.sum(axis=1) / max(1, len(sentences) - 1)
    score = 0.7 * centrality + 0.3 * (sent_vecs @ title_vec)
    chosen: list[int] = []
    used = 0
    for idx in np.argsort(-score):
        n = len(sentences[idx].split())
        if chosen and used + n > max_words:
            continue
        chosen.append(int(idx))
        used += n
        if used >= max_words * 0.8:
            break
    return _clip(" ".join(sentences[i] for i in sorted(chosen)), max_words)


def _clip(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]).rstrip(",;:") + "…"


class ArticleSummary(BaseModel):
    """What the LLM must return for one article."""

    summary: str = Field(min_length=1)
    key_points: list[str] = Field(default_factory=list, max_length=8)
    tags: list[str] = Field(default_factory=list, max_length=10)
    category: Literal[CATEGORIES] = "other"  # type: ignore[valid-type]

    @field_validator("tags")
    @classmethod
    def _lower(cls, tags: list[str]) -> list[str]:
        return [t.strip().lower() for t in tags if t.strip()]

    @field_validator("category", mode="before")
    @classmethod
    def _known(cls, value: object) -> str:
        value = str(value or "other").strip().lower()
        return value if value in CATEGORIES else "other"


def _parse(raw: str, max_words: int) -> ArticleSummary:
    text = raw.strip()
    if text.startswith("```"):
        text = re.sub(r"^```(json)?|```$", "", text, flags=re.MULTILINE).strip()
    result = ArticleSummary.model_validate(json.loads(text))
    if len(result.summary.split()) > max_words * 1.25:
        raise ValueError(f"summary has {len(result.summary.split())} words, budget is {max_words}")
    return result


def estimate_tokens(text: str) -> int:
    """Tokens a chat model's tokenizer makes of `text`, estimated from above: about four ASCII
    characters a token, one token per other character (CJK, accents). No tokenizer for OpenAI's
    models ships offline (tiktoken downloads its tables) and the model may be any server's."""
    ascii_chars = sum(1 for c in text if ord(c) < 128)
    return math.ceil(ascii_chars / 4 + (len(text) - ascii_chars))


def cap_tokens(text: str, max_tokens: int) -> tuple[str, bool]:
    """`text` cut at a sentence boundary to at most `max_tokens` (estimated); (text, cut)."""
    if estimate_tokens(text) <= max_tokens:
        return text, False
    kept: list[str] = []
    used = 0
    for sentence in split_sentences(text):
        cost = estimate_tokens(sentence) + 1
        if used + cost > max_tokens:
            break
        kept.append(sentence)
        used += cost
    if not kept:  # one sentence longer than the budget: cut it by characters
        return text[: max_tokens * 4], True
    return " ".join(kept), True


def llm_summary(title: str, body: str, max_words: int = 60) -> tuple[ArticleSummary | None, str]:
    """Ask the LLM; one repair attempt on malformed output. Returns (result or None, note).

    The article text is capped at `LLM_MAX_INPUT_TOKENS` first (cut at a sentence boundary)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    body, cut = cap_tokens(body, get_settings().llm_max_input_tokens)

    model = get_chat_model(model_kwargs={"response_format": {"type": "json_object"}})
    messages = [
        SystemMessage(prompts.render("summarize_system", max_words=max_words)),
        HumanMessage(prompts.render("summarize_user", article=prompts.article_slot(title, body))),
    ]
    problem = ""
    for attempt in range(2):
        raw = invoke_limited(model, messages).content
        raw = raw if isinstance(raw, str) else json.dumps(raw)
        try:
            note = "" if attempt == 0 else "repaired once"
            if cut:
                note = "; ".join(filter(None, [note, "text cut to LLM_MAX_INPUT_TOKENS"]))
            return _parse(raw, max_words), note
        except (ValueError, ValidationError) as exc:
            problem = str(exc).splitlines()[0][:300]
            messages += [AIMessage(raw), HumanMessage(prompts.render("repair", problem=problem))]
    return None, f"LLM output unusable after one repair: {problem}"


@app.task(
    bind=True,
    # The client already retries timeouts, connection errors, 429 and 5xx (honouring
    # Retry-After); Celery retries only what it does not: our own transient errors.
    autoretry_for=(TransientError, DatabaseUnavailable),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=3,
)
def summarize_article(self, article_id: int, prefer: str = "llm", max_words: int = 60) -> dict:  # noqa: ANN001
    """Summarize one article (idempotent: a current summary is kept, not redone)."""
    settings = get_settings()
    use_llm = prefer == "llm" and settings.llm_enabled
    source = "llm" if use_llm else "extractive"
    with connection() as conn:
        article = store.get_article(conn, article_id)
        if store.summary_is_current(conn, article_id, article["content_hash"], source):
            return {"article_id": article_id, "summary_source": source, "cached": True}
    note = None
    result: ArticleSummary | None = None
    if use_llm:
        result, note = llm_summary(article["title"], article["text"], max_words)
    if result is None:
        source = "extractive"
        text = extractive_summary(article["title"], article["text"], get_embedder(), max_words)
        result = ArticleSummary(summary=text)
    with connection() as conn:
        store.store_summary(
            conn,
            article_id,
            content_hash=article["content_hash"],
            summary=result.summary,
            source=source,
            key_points=result.key_points,
            tags=result.tags,
            category=result.category if source == "llm" else None,
            model=settings.llm_model if source == "llm" else get_embedder().name,
            note=note or None,
        )
    return {"article_id": article_id, "summary_source": source, "cached": False, "note": note}
