"""The Celery application: configuration, queues, routes and the beat schedule, nothing else.

`celery -A tasks worker -Q <queues>` runs a worker of the fleet (Celery's default prefork pool
unless `--pool` says otherwise). With no `CELERY_BROKER_URL` the app points at an in-process
memory transport and an in-memory result store, which only the embedded worker of
`python -m graphs.run_daily` (or Studio) consumes. Task modules are listed in `include`; this
module defines no task. The `orchestrate` queue's task lives in `graphs.orchestrate` (it runs a
graph), so its single worker starts with `celery -A graphs.orchestrate worker -Q orchestrate`.
"""

from __future__ import annotations

from celery import Celery, signals
from celery.schedules import crontab
from kombu import Queue

from core.errors import ConfigError
from core.redact import install_log_redaction
from core.settings import Settings, get_settings

QUEUES = ("ingest", "llm", "embed", "analyze", "publish", "orchestrate")
WORK_QUEUES = QUEUES[:-1]  # what the embedded worker consumes; orchestrate runs graphs


def time_limits(visibility_timeout: int) -> tuple[int, int]:
    """(soft, hard) task time limits, both well below the visibility timeout, so a task is
    stopped before Redis would hand a second worker a copy of it."""
    hard = max(2, visibility_timeout // 2)
    return max(1, hard - max(1, hard // 15)), hard


EMBEDDED_BACKEND = "tasks.embedded:RunMemoryBackend"

ROUTES = {
    "tasks.ingest.*": {"queue": "ingest"},
    "tasks.pages.*": {"queue": "ingest"},
    "tasks.summarize.*": {"queue": "llm"},
    "tasks.embed.*": {"queue": "embed"},
    "tasks.classify.*": {"queue": "embed"},
    "tasks.analyze.*": {"queue": "analyze"},
    "tasks.store.*": {"queue": "analyze"},
    "tasks.copycheck.*": {"queue": "analyze"},
    "tasks.publish.*": {"queue": "publish"},
    "graphs.orchestrate.*": {"queue": "orchestrate"},
}


def _digest_crontab(at: str) -> crontab:
    try:
        hour, minute = (int(x) for x in at.split(":"))
    except ValueError as exc:
        raise ConfigError(f"DIGEST_AT must be HH:MM (UTC), got {at!r}") from exc
    return crontab(hour=hour, minute=minute)


def build_config(settings: Settings) -> dict:
    """The Celery configuration for these settings (pure: no connection is made)."""
    broker = settings.celery_broker_url or "memory://localhost/"
    backend = settings.effective_result_backend
    if settings.celery_broker_url and not backend:
        raise ConfigError(
            "CELERY_RESULT_BACKEND is required when the broker is not Redis "
            "(set it to a redis:// URL)"
        )
    visibility = settings.celery_visibility_timeout
    soft, hard = time_limits(visibility)
    transport: dict[str, float] = {
        "visibility_timeout": visibility,
        # How often workers sweep for tasks whose worker vanished before acknowledging them
        # (kombu's default is about every 100 s): scaled to the visibility timeout.
        "unacked_restore_interval": max(1, min(10, visibility // 6)),
        "unacked_restore_throttle": 1 if visibility < 600 else 10,
    }
    if broker.startswith("memory"):
        transport["polling_interval"] = 0.005
    interval = settings.ingest_interval_minutes
    return {
        "broker_url": broker,
        "result_backend": backend or EMBEDDED_BACKEND,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_track_started": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": hard,
        "task_soft_time_limit": soft,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": visibility},
        "result_expires": 24 * 3600,
        "result_extended": False,
        "broker_connection_retry_on_startup": True,
        # A broker outage: publishing retries for about 25 s, then fails visibly (the article
        # is recorded failed with the reason); results are stored with retries too.
        "task_publish_retry_policy": {
            "max_retries": 10,
            "interval_start": 0.5,
            "interval_step": 1.0,
            "interval_max": 3.0,
        },
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_max_tasks_per_child": 1000,
        "worker_max_memory_per_child": 1_500_000,  # KiB; the embed model alone is ~500 MB
        "worker_hijack_root_logger": False,
        "task_queues": [Queue(name) for name in QUEUES],
        "task_default_queue": "analyze",
        "task_routes": ROUTES,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            "ingest-feeds": {
                "task": "tasks.ingest.ingest_all",
                "schedule": interval * 60.0,
                "options": {"expires": max(30.0, interval * 60.0 * 0.9)},
            },
            "daily-digest": {
                "task": "graphs.orchestrate.run_daily_task",
                "schedule": _digest_crontab(settings.digest_at),
                "options": {"expires": 3600.0},
            },
        },
    }


app = Celery(
    "aml",
    task_cls="tasks.guard:GuardedTask",
    include=[
        "tasks.ingest",
        "tasks.pages",
        "tasks.summarize",
        "tasks.embed",
        "tasks.analyze",
        "tasks.store",
        "tasks.copycheck",
        "tasks.health",
        "tasks.classify",
        "tasks.publish",
    ],
)
app.conf.update(build_config(get_settings()))


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_logs(**_kwargs: object) -> None:
    """Every worker (the orchestrate worker too) redacts its log records once Celery has set
    up its handlers, and keeps httpx at WARNING (its INFO line is the full webhook URL)."""
    get_settings()  # tells core.redact the secrets to mask
    install_log_redaction()
