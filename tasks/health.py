"""A no-op task for readiness checks and benchmarks of the queue itself.

`noop` does nothing but return its argument, so timing it measures Celery and the broker, not
our work. Route it anywhere with `.set(queue=...)`.
"""

from __future__ import annotations

from .app import app


@app.task
def noop(value: int = 0) -> int:
    """Return `value` unchanged."""
    return value
