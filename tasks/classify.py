"""Category and tags for an article whose summary did not come with them (queue `embed`).

The LLM's structured summary already carries a category and tags. For extractive summaries
this task classifies offline: tags are the article's most distinctive words, the category the
nearest of a few category descriptions in embedding space (reusing the stored article vector,
so no re-embedding). It runs where the embedding model is loaded.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

import numpy as np

from vectorstore import articles as store
from vectorstore import connection

from .app import app
from .guard import STORAGE_RETRY
from .providers import get_embedder

CATEGORY_DESCRIPTIONS = {
    "technology": "technology, software, computers, chips, internet, apps, artificial intelligence",
    "science": "science, research, space, physics, biology, climate study, discovery",
    "business": "business, companies, markets, stocks, earnings, economy, trade, prices",
    "politics": "politics, government, elections, parliament, policy, law, ministers",
    "world": "international news, countries, diplomacy, conflict, disasters, ports, strikes",
    "health": "health, medicine, hospitals, disease, vaccines, patients, doctors",
    "sports": "sports, football, matches, teams, players, league, championship",
    "culture": "culture, arts, music, film, books, museums, festivals",
}
_STOP = set(
    """a an the and or but of to in on at for from by with about as is are was were be been it
    its this that these those he she they we you i his her their our your not no will would can
    could has have had do does did said says say also more most than then there here which who
    whom what when where why how all any some into over after before under up down out new one
    two three el la los las de del y en que un una por con para se su al es""".split()
)
_lock = threading.Lock()
_prototypes: tuple[str, list[str], np.ndarray] | None = None


def keywords(text: str, k: int = 5) -> list[str]:
    """The most frequent content words (lower case, 4+ letters, no stop words)."""
    words = re.findall(r"[a-záéíóúñü][a-záéíóúñü'-]{3,}", text.lower())
    counts = Counter(w for w in words if w not in _STOP)
    return [w for w, _ in counts.most_common(k)]


def _category_vectors() -> tuple[list[str], np.ndarray]:
    global _prototypes
    embedder = get_embedder()
    with _lock:
        if _prototypes is None or _prototypes[0] != embedder.name:
            names = list(CATEGORY_DESCRIPTIONS)
            vecs = embedder.embed_batch([CATEGORY_DESCRIPTIONS[n] for n in names])
            _prototypes = (embedder.name, names, vecs)
        return _prototypes[1], _prototypes[2]


def classify(vector: np.ndarray | None, title: str, body: str) -> tuple[str, list[str]]:
    """(category, tags) for an article from its vector and text."""
    tags = keywords(f"{title} {title} {body}")
    if vector is None:
        return "other", tags
    names, protos = _category_vectors()
    scores = protos @ vector
    best = int(np.argmax(scores))
    return (names[best] if scores[best] > 0.1 else "other"), tags


@app.task(**STORAGE_RETRY)
def classify_article(article_id: int) -> dict:
    """Classify one article offline and store category and tags on its summary."""
    with connection() as conn:
        article = store.get_article(conn, article_id)
        vector = store.article_vector(conn, article_id)
    category, tags = classify(vector, article["title"], article["text"])
    with connection() as conn:
        store.set_classification(conn, article_id, category=category, tags=tags)
    return {"article_id": article_id, "category": category, "tags": tags}
