"""Copies: stored text fingerprints, the LSH candidate query, and the copy links between articles.

A fingerprint (MinHash values and LSH band keys of the text an article was processed from) is
kept per article, so a copy of an article stored in any earlier run is found by one indexed
query (`bands && ...`, GIN). `lock_copies` serialises copy decisions fleet-wide for the length
of a transaction, so two copies decided at once always see each other. Storage only: the
decision itself is `tasks.copies`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .articles import PAGE_JOIN, TEXT_SQL

_LOCK_KEY = 7_201_102  # advisory lock: one copy decision at a time


def lock_copies(conn: psycopg.Connection, wait_seconds: float = 30.0) -> None:
    """Hold the copy-decision lock until the current transaction ends; waiting longer than
    `wait_seconds` for it raises (psycopg's LockNotAvailable, retried by the task)."""
    conn.execute(f"SET LOCAL lock_timeout = '{int(wait_seconds * 1000)}ms'")
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    conn.execute("SET LOCAL lock_timeout = 0")


def store_fingerprint(
    conn: psycopg.Connection,
    article_id: int,
    *,
    text_hash: str,
    minhash: bytes,
    bands: Sequence[int],
    words: int,
) -> None:
    conn.execute(
        "INSERT INTO fingerprints (article_id, text_hash, minhash, bands, words) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (article_id) DO UPDATE SET "
        "text_hash = EXCLUDED.text_hash, minhash = EXCLUDED.minhash, bands = EXCLUDED.bands, "
        "words = EXCLUDED.words, created_at = now()",
        (article_id, text_hash, minhash, list(bands), words),
    )


def candidates(
    conn: psycopg.Connection,
    article_id: int,
    bands: Sequence[int],
    text_hash: str,
    since: datetime,
    until: datetime,
) -> list[dict[str, Any]]:
    """Other articles placed in [since, until] whose fingerprint shares an LSH band (or the
    exact text) with this one: id, text, text_hash, placed_at, state, duplicate_of."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            f"""
        SELECT a.id, {TEXT_SQL} AS text, fp.text_hash, a.state, a.duplicate_of,
               coalesce(a.published, a.first_seen) AS placed_at
        FROM fingerprints fp JOIN articles a ON a.id = fp.article_id {PAGE_JOIN}
        WHERE fp.article_id <> %(id)s AND (fp.bands && %(bands)s OR fp.text_hash = %(hash)s)
          AND a.state <> 'failed'
          AND coalesce(a.published, a.first_seen) BETWEEN %(since)s AND %(until)s
        """,
            {
                "id": article_id,
                "bands": list(bands),
                "hash": text_hash,
                "since": since,
                "until": until,
            },
        )  # fmt: skip
        .fetchall()
    )


def placements(conn: psycopg.Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """placed_at, state and duplicate_of of these articles, by id."""
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT id, state, duplicate_of, coalesce(published, first_seen) AS placed_at "
            "FROM articles WHERE id = ANY(%s)",
            (list(ids),),
        )
        .fetchall()
    )
    return {int(r["id"]): r for r in rows}


def mark_kept(conn: psycopg.Connection, article_id: int) -> None:
    """This article is a distinct text (the kept copy of its group)."""
    conn.execute("UPDATE articles SET duplicate_of = NULL WHERE id = %s", (article_id,))


def mark_copy(conn: psycopg.Connection, article_id: int, kept_id: int, state: str) -> None:
    """This article is a copy of `kept_id` (`state`: duplicate or near_duplicate)."""
    conn.execute(
        "UPDATE articles SET duplicate_of = %s, state = %s, "
        "processed_hash = CASE WHEN state IN ('processed', 'skipped', 'duplicate', "
        "'near_duplicate') THEN content_hash ELSE processed_hash END WHERE id = %s",
        (kept_id, state, article_id),
    )


def repoint(conn: psycopg.Connection, old_ids: Sequence[int], kept_id: int) -> list[int]:
    """Copies that pointed at any of `old_ids` now point at `kept_id` (flat links)."""
    rows = conn.execute(
        "UPDATE articles SET duplicate_of = %s WHERE duplicate_of = ANY(%s) RETURNING id",
        (kept_id, list(old_ids)),
    ).fetchall()
    return [int(r[0]) for r in rows]


def text_hashes(conn: psycopg.Connection, ids: Sequence[int]) -> dict[int, str]:
    """The hash of the text each of these articles was fingerprinted from, by id."""
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT article_id, text_hash FROM fingerprints WHERE article_id = ANY(%s)", (list(ids),)
    ).fetchall()
    return {int(r[0]): str(r[1]) for r in rows}
