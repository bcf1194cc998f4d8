"""The copy decision (queue `analyze`): is this article a copy of another stored article's text?

`check_copy` fingerprints the text the article is processed from, stores the fingerprint, finds
candidates among every stored article (LSH bands, PostgreSQL), verifies each on the two texts
(`tasks.copies.compare`) and links the group to its earliest published member: that one is kept
(summarized, embedded), every other member points at it (`duplicate_of`) as a `duplicate` (the
same text) or a `near_duplicate` (a lightly edited copy). Decisions are serialised fleet-wide by
a transaction lock, so copies decided at the same moment see each other; when an earlier copy
arrives after a later one was kept (its feed was read later), the later one is re-pointed at it.
Idempotent: deciding again gives the same links.
"""

from __future__ import annotations

from datetime import timedelta

from vectorstore import articles as store
from vectorstore import connection
from vectorstore import copies as copy_store

from .app import app
from .copies import compare, fingerprint
from .feedparse import content_hash
from .guard import STORAGE_RETRY


def decide_copy(article_id: int, days: float = 3.0) -> dict:
    """Link the article into its copy group; returns {"copy_of": id | None, "exact": bool,
    "repointed": [ids], "reason": str}."""
    with connection() as conn, conn.transaction():
        copy_store.lock_copies(conn)
        article = store.get_article(conn, article_id)
        text = article["text"]
        text_hash = content_hash(text)
        fp = fingerprint(text)
        copy_store.store_fingerprint(
            conn, article_id, text_hash=text_hash, minhash=fp.minhash, bands=fp.bands,
            words=fp.words,
        )  # fmt: skip
        placed = article["published"] or article["first_seen"]
        span = timedelta(days=days)
        found = copy_store.candidates(
            conn, article_id, fp.bands, text_hash, placed - span, placed + span
        )
        hashes = {article_id: text_hash}
        matched: list[int] = []
        reason = "no stored text shares its words"
        for cand in found:
            if cand["text_hash"] == text_hash:
                verdict_copy, reason = True, "the same text"
            else:
                verdict = compare(text, cand["text"])
                verdict_copy, reason = verdict.is_copy, verdict.reason
            if verdict_copy:
                matched.append(int(cand["id"]))
                hashes[int(cand["id"])] = cand["text_hash"]
        if not matched:
            copy_store.mark_kept(conn, article_id)
            return {"copy_of": None, "exact": False, "repointed": [], "reason": reason}
        info = copy_store.placements(conn, matched)
        roots = {int(i["duplicate_of"]) for i in info.values() if i["duplicate_of"]}
        group = {article_id, *matched, *roots}
        info = copy_store.placements(conn, sorted(group))
        live = [i for i in group if i in info and info[i]["state"] != "failed"]
        kept = min(live, key=lambda i: (info[i]["placed_at"], i))
        hashes.update(copy_store.text_hashes(conn, [i for i in group if i not in hashes]))
        if kept == article_id:
            copy_store.mark_kept(conn, article_id)
            others = sorted(group - {article_id})
            for other in others:
                exact = hashes.get(other) == text_hash
                copy_store.mark_copy(
                    conn, other, article_id, "duplicate" if exact else "near_duplicate"
                )
            copy_store.repoint(conn, others, article_id)
            return {"copy_of": None, "exact": False, "repointed": others,
                    "reason": "the earliest published copy of its text"}  # fmt: skip
        exact = hashes.get(kept) == text_hash
        state = "duplicate" if exact else "near_duplicate"
        copy_store.mark_copy(conn, article_id, kept, state)
        return {"copy_of": kept, "exact": exact, "repointed": [], "reason": reason}


@app.task(**STORAGE_RETRY)
def check_copy(article_id: int, days: float = 3.0) -> dict:
    """Celery wrapper of `decide_copy`."""
    return decide_copy(article_id, days)
