"""Expected failures are recorded where the user sees them; programming errors surface.

An article step catches what it expects (a task that failed, a deadline, an unreachable
service); a TypeError in the orchestrator's own code is a bug and must not be filed away as a
failed article. Naive times are UTC wherever an `as_of` is read, whatever the machine's zone.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime

import pytest
from langgraph.runtime import Runtime

from graphs.daily import process_article
from graphs.state import RunContext
from vectorstore import articles as store
from vectorstore import feeds as feed_store
from vectorstore import runs

BODY = " ".join(["The harbour bridge reopened on Thursday after two years of repairs."] * 6)


def _article_in_run(db, run_id: str) -> int:
    with db.connection() as conn:
        runs.create_run(conn, run_id, as_of=datetime(2026, 11, 26, tzinfo=UTC),
                        window_hours=24, feeds_key="k", modes={})  # fmt: skip
        feed = feed_store.upsert_feed(conn, "https://bridge.example/rss")
        [aid] = store.upsert_articles(
            conn, feed,
            [store.NewArticle(guid="b-1", url="https://bridge.example/1",
                              canonical_url="https://bridge.example/1", title="Bridge reopens",
                              body=BODY, content_hash="h-b-1", published=None,
                              date_source="none")],
        )  # fmt: skip
        runs.add_run_articles(conn, run_id, [aid], "https://bridge.example/rss")
    return aid


def test_a_type_error_in_an_article_step_surfaces_instead_of_failing_the_article(db) -> None:
    aid = _article_in_run(db, "run-bug")
    # A context with a None deadline is a programming error: the embed step's float() of it
    # raises TypeError inside the step, before anything is dispatched.
    ctx = RunContext(run_deadline_seconds=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        asyncio.run(process_article({"article_id": aid, "run_id": "run-bug"}, Runtime(context=ctx)))
    with db.connection() as conn:
        status = runs.run_article_status(conn, "run-bug", aid)
        state = store.get_article(conn, aid)["state"]
    assert status == "pending" and state == "pending"


@pytest.fixture
def los_angeles(monkeypatch: pytest.MonkeyPatch):
    """The process runs in a zone eight hours behind UTC."""
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_naive_as_of_is_utc_everywhere_it_is_read(los_angeles) -> None:
    from core.timeutil import parse_iso
    from graphs.run_daily import parse_as_of
    from tasks.publish import digest_day

    late = "2026-11-26T23:30:00"
    expected = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)
    assert parse_iso(late) == expected and parse_iso(late).tzinfo is not None
    assert parse_iso("2026-11-26T23:30:00Z") == expected
    assert parse_iso("2026-11-27T01:30:00+02:00") == expected
    assert parse_as_of(late) == expected
    assert digest_day({"as_of": late}) == date(2026, 11, 26)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_iso("yesterday")
