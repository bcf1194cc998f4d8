"""Ordered, named schema migrations, recorded in `schema_migrations`.

Each migration runs once, in order, inside one transaction guarded by an advisory lock, so many
workers starting at once migrate exactly once. Only features of pgvector 0.6 are used (the
embedded server ships 0.6.2). Append new migrations; never edit an applied one.
"""

from __future__ import annotations

import psycopg

_LOCK_KEY = 7_201_100  # advisory lock id for migrations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE EXTENSION IF NOT EXISTS vector;

        CREATE TABLE feeds (
            id bigserial PRIMARY KEY,
            url text NOT NULL UNIQUE,
            title text,
            etag text,
            last_modified text,
            last_fetched_at timestamptz,
            last_status text,
            http_status integer,
            consecutive_failures integer NOT NULL DEFAULT 0,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE articles (
            id bigserial PRIMARY KEY,
            feed_id bigint NOT NULL REFERENCES feeds(id),
            guid text NOT NULL,
            url text NOT NULL,
            canonical_url text NOT NULL UNIQUE,
            title text NOT NULL,
            body text NOT NULL,
            content_hash text NOT NULL,
            published timestamptz,
            date_source text NOT NULL,
            first_seen timestamptz NOT NULL DEFAULT now(),
            author text,
            language text,
            state text NOT NULL DEFAULT 'pending',
            duplicate_of bigint REFERENCES articles(id),
            processed_hash text,
            error text,
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (feed_id, guid)
        );
        CREATE INDEX articles_content_hash ON articles (content_hash);
        CREATE INDEX articles_placed_at ON articles ((coalesce(published, first_seen)));
        CREATE INDEX articles_state ON articles (state);

        CREATE TABLE summaries (
            article_id bigint PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            content_hash text NOT NULL,
            summary text NOT NULL,
            key_points jsonb NOT NULL DEFAULT '[]',
            tags jsonb NOT NULL DEFAULT '[]',
            category text,
            source text NOT NULL,
            model text,
            note text,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE embeddings (
            article_id bigint PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            content_hash text NOT NULL,
            model text NOT NULL,
            embedding vector({dims}) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX embeddings_hnsw ON embeddings USING hnsw (embedding vector_cosine_ops);

        CREATE TABLE runs (
            id text PRIMARY KEY,
            as_of timestamptz NOT NULL,
            window_hours integer NOT NULL,
            feeds_key text NOT NULL,
            status text NOT NULL,
            modes jsonb NOT NULL DEFAULT '{{}}',
            report jsonb,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        );

        CREATE TABLE run_feeds (
            run_id text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            position integer NOT NULL,
            listed_url text NOT NULL,
            feed_id bigint REFERENCES feeds(id),
            status text NOT NULL,
            error text,
            articles integer NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, position)
        );

        CREATE TABLE run_articles (
            run_id text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            article_id bigint NOT NULL REFERENCES articles(id),
            feed_url text NOT NULL,
            status text NOT NULL DEFAULT 'pending',
            error text,
            PRIMARY KEY (run_id, article_id)
        );

        CREATE TABLE stories (
            run_id text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            id text NOT NULL,
            label text NOT NULL,
            synthesis text,
            keywords jsonb NOT NULL DEFAULT '[]',
            article_ids bigint[] NOT NULL,
            sources text[] NOT NULL,
            trend_score double precision NOT NULL DEFAULT 0,
            is_trending boolean NOT NULL DEFAULT false,
            PRIMARY KEY (run_id, id)
        );

        CREATE TABLE digests (
            day date PRIMARY KEY,
            run_id text NOT NULL REFERENCES runs(id),
            digest jsonb NOT NULL,
            published_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        "0002_story_signals_and_webhook",
        """
        ALTER TABLE stories ADD COLUMN label_source text NOT NULL DEFAULT 'offline';
        ALTER TABLE stories ADD COLUMN signals jsonb NOT NULL DEFAULT '{{}}';
        ALTER TABLE digests ADD COLUMN webhook jsonb;
        """,
    ),
    (
        "0003_feed_last_articles",
        """
        ALTER TABLE feeds ADD COLUMN last_article_ids bigint[] NOT NULL DEFAULT '{{}}';
        """,
    ),
    (
        "0004_copies_and_carriers",
        """
        CREATE TABLE fingerprints (
            article_id bigint PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            text_hash text NOT NULL,
            minhash bytea NOT NULL,
            bands bigint[] NOT NULL,
            words integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX fingerprints_bands ON fingerprints USING gin (bands);

        CREATE TABLE carriers (
            article_id bigint NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
            feed_id bigint NOT NULL REFERENCES feeds(id),
            guid text NOT NULL,
            url text NOT NULL,
            body text NOT NULL,
            content_hash text NOT NULL,
            first_seen timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (article_id, feed_id)
        );
        INSERT INTO carriers (article_id, feed_id, guid, url, body, content_hash)
            SELECT id, feed_id, guid, url, body, content_hash FROM articles;

        ALTER TABLE run_feeds ADD COLUMN dropped jsonb NOT NULL DEFAULT '[]';
        ALTER TABLE stories ADD COLUMN summary text;
        ALTER TABLE stories ADD COLUMN key text;
        ALTER TABLE stories ADD COLUMN independent_texts integer;

        CREATE TABLE story_texts (
            key text PRIMARY KEY,
            label text NOT NULL,
            synthesis text,
            source text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        "0005_pages",
        """
        CREATE TABLE pages (
            article_id bigint PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            url text NOT NULL,
            feed_hash text NOT NULL,
            status text NOT NULL,
            text text,
            error text,
            transient boolean NOT NULL DEFAULT false,
            http_status integer,
            etag text,
            last_modified text,
            fetched_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        "0006_fractional_window",
        """
        ALTER TABLE runs ALTER COLUMN window_hours TYPE double precision;
        """,
    ),
]


def migrate(conn: psycopg.Connection, *, dims: int) -> list[str]:
    """Apply pending migrations in order; returns the names applied now."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            conn.execute(sql.format(dims=int(dims)).encode())
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            applied_now.append(name)
    return applied_now


def app_tables(conn: psycopg.Connection) -> list[str]:
    """The tables the migrations made, from the database's own catalogue (not a copy of the
    list): every public table but the migration record and the checkpointer's."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations' AND tablename NOT LIKE 'checkpoint%'"
        )
    ]
