"""Storage: PostgreSQL + pgvector. The only package that imports psycopg.

`db` owns the pool and the embedded server, `migrations` the schema, `articles` feeds, articles,
summaries and vectors, `runs` what each run read and produced. Storage knows no queue, graph or
model.
"""

from .db import close_db, connection, get_db

__all__ = ["close_db", "connection", "get_db"]

from psycopg import OperationalError as DatabaseUnavailable  # noqa: E402  (retry on this)

__all__ += ["DatabaseUnavailable"]
