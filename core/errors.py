"""Error types shared by every layer.

Two kinds matter to the pipeline: a `TransientError` is retried (timeouts, connection resets,
5xx, 429), a `PermanentError` is recorded on the row and the run goes on. Messages say how to fix
the problem. This module holds types only, no behaviour.
"""

from __future__ import annotations


class AMLError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(AMLError):
    """The configuration cannot work; the message names the variable to change."""


class TransientError(AMLError):
    """Worth retrying later; `retry_after` (seconds) when the remote said so, and `brief`, the
    cause in a few words for a report ("timed out after 10 s"), when the raiser has one."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        http_status: int | None = None,
        *,
        brief: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.http_status = http_status
        self.brief = brief


class PermanentError(AMLError):
    """Retrying will not help; recorded where the user will see it (`brief` as above)."""

    def __init__(
        self, message: str, http_status: int | None = None, *, brief: str | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.brief = brief


class FeedRefused(PermanentError):
    """A feed URL or document we refuse to touch (hostile address, scheme, entities)."""


class UnwantedType(PermanentError):
    """A response's Content-Type is not one the caller accepts (checked before its body)."""

    def __init__(self, message: str, content_type: str | None, http_status: int) -> None:
        super().__init__(message, http_status, brief=f"type {content_type or 'missing'}")
        self.content_type = content_type


class TaskFailed(AMLError):
    """A delegated task finished in failure. The worker's exception is `__cause__` and its
    type name starts the message, so a bug in a task is reported on the article, while an
    exception raised by the orchestrator's own code is never mistaken for a task failure."""

    def __init__(self, task: str, remote: BaseException | str) -> None:
        detail = remote if isinstance(remote, str) else f"{type(remote).__name__}: {remote}"
        super().__init__(detail)
        self.task = task


class DispatchTimeout(AMLError):
    """A delegated task gave no result within its deadline after every re-dispatch."""


class RunBusy(AMLError):
    """Another run holds the lease of this feed list."""
