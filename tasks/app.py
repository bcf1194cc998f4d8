"""The Celery application: configuration, queues, routes and the beat schedule, nothing else.

`celery -A tasks worker -Q <queues>` runs a worker of the fleet (Celery's default prefork pool
unless `--pool` says otherwise). With no `CELERY_BROKER_URL` the app points at an in-process
memory transport and an in-memory result store, which only the embedded worker of
`python -m graphs.run_daily` (or Studio) consumes. Task modules are listed in `include`; this
module defines no task. The `orchestrate` queue's task lives in `graphs.orchestrate` (it runs a
graph), so its single worker starts with `celery -A graphs.orchestrate worker -Q orchestrate`.
"""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab
from kombu import Queue

from core.errors import ConfigError
from core.settings import Settings, get_settings

QUEUES = ("ingest", "llm", "embed", "analyze", "publish", "orchestrate")
WORK_QUEUES = QUEUES[:-1]  # what the embedded worker consumes; orchestrate runs graphs

VISIBILITY_TIMEOUT = 1800  # seconds; every time limit and backoff stays below it
HARD_TIME_LIMIT = 900
SOFT_TIME_LIMIT = 840
EMBEDDED_BACKEND = "tasks.embedded:RunMemoryBackend"

ROUTES = {
    "tasks.ingest.*": {"queue": "ingest"},
    "tasks.summarize.*": {"queue": "llm"},
    "tasks.embed.*": {"queue": "embed"},
    "tasks.classify.*": {"queue": "embed"},
    "tasks.analyze.*": {"queue": "analyze"},
    "tasks.store.*": {"queue": "analyze"},
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
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT}
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
        "task_time_limit": HARD_TIME_LIMIT,
        "task_soft_time_limit": SOFT_TIME_LIMIT,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT},
        "result_expires": 24 * 3600,
        "result_extended": False,
        "broker_connection_retry_on_startup": True,
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
    include=[
        "tasks.ingest",
        "tasks.summarize",
        "tasks.embed",
        "tasks.analyze",
        "tasks.store",
        "tasks.health",
        "tasks.classify",
        "tasks.publish",
    ],
)
app.conf.update(build_config(get_settings()))
