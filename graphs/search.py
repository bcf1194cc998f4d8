"""`python -m graphs.search "query"`: the stored articles closest in meaning to a query.

Embeds the query with the same embedder as the articles (in this process: a search is one
short text, not worth a queue round trip) and asks pgvector's HNSW index for the nearest
vectors. Prints title, source, date and similarity score.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from core.errors import AMLError
from core.redact import redact_url
from core.timeutil import parse_iso


def search(query: str, *, since: datetime | None = None, limit: int = 10) -> list[dict]:
    """The `limit` stored articles nearest to `query` (cosine), newest-first on ties."""
    from tasks.providers import get_embedder
    from vectorstore import articles as store
    from vectorstore import connection

    [vector] = get_embedder().embed_batch([query])
    with connection() as conn:
        return store.nearest_articles(
            conn, vector, limit=limit, since=since, ef_search=max(100, limit * 2)
        )


def _date(value: str) -> datetime:
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date: {value!r}") from exc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m graphs.search",
        description="Semantic search over stored articles (pgvector HNSW, cosine).",
    )
    p.add_argument("query", help="what to look for, in plain words")
    p.add_argument("--since", type=_date, default=None, metavar="DATE",
                   help="only articles placed at or after DATE (ISO 8601)")  # fmt: skip
    p.add_argument("--limit", type=int, default=10, metavar="N", help="results (default 10)")
    args = p.parse_args(argv)
    try:
        hits = search(args.query, since=args.since, limit=args.limit)
    except AMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not hits:
        print("no stored articles match (run python -m graphs.run_daily first)")
        return 0
    for h in hits:
        when = h["published"] or h["first_seen"]
        print(f"{h['similarity']:.3f}  {when:%Y-%m-%d}  {h['title']}")
        print(f"       {redact_url(h['feed_url'])}  {h['url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
