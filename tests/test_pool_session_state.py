"""A pooled connection goes back to the pool as it came: no session setting leaks."""

from __future__ import annotations

import numpy as np

from vectorstore import articles as store
from vectorstore.db import Database


def test_ef_search_does_not_leak_to_the_next_user_of_the_connection(db) -> None:
    one = Database(db.url, dims=384, max_size=1)  # one connection: the next user gets it
    try:
        with one.connection() as conn:
            default = conn.execute("SELECT current_setting('hnsw.ef_search', true)").fetchone()[0]
        vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
        with one.connection() as conn:
            store.nearest_articles(conn, vector, limit=3, ef_search=123)
        with one.connection() as conn:
            after = conn.execute("SELECT current_setting('hnsw.ef_search', true)").fetchone()[0]
            pid_after = conn.info.backend_pid
        with one.connection() as conn:
            assert conn.info.backend_pid == pid_after  # really the same session
        assert after != "123"
        assert after in (default, "40", None, "")
    finally:
        one.close()
