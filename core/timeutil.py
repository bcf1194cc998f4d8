"""Times as the project reads them: one ISO 8601 parser, every result aware and in UTC.

A naive time (no offset) is taken as UTC, never as the machine's local zone, so a run's window
is the same on every host. This module only parses and normalizes; it reads no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime (a naive one is taken as UTC)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def parse_iso(value: str) -> datetime:
    """An ISO 8601 time (a trailing Z is fine; naive means UTC) as an aware UTC datetime.

    Raises ValueError naming the value when it is not ISO 8601."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"not an ISO 8601 time: {value!r}") from exc
    return as_utc(parsed)
