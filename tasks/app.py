"""The Celery application: configuration, queues, routes and the beat schedule, nothing else.

`celery -A tasks worker -Q <queues>` runs a worker of the fleet (Celery's default prefork pool
unless `--pool` says otherwise). With no `CELERY_BROKER_URL` the app points at an in-process
memory transport and an in-memory result store, which only the embedded worker of
`python -m graphs.run_daily` (or Studio) consumes. Task modules are listed in `include`; this
module defines no task. The `orchestrate` queue's task lives in `graphs.orchestrate` (it runs a
graph), so its single worker starts with `celery -A graphs.orchestrate worker -Q orchestrate`.
The broker is Redis or RabbitMQ (`amqp://`, quorum queues with publisher confirms); results,
leases and limits are on Redis either way.
"""

from __future__ import annotations

import logging

from celery import Celery, signals
from celery.schedules import crontab
from celery.signals import worker_init
from kombu import Exchange, Queue

from core.errors import ConfigError
from core.redact import install_log_redaction
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

QUEUES = ("ingest", "llm", "embed", "analyze", "publish", "orchestrate")
WORK_QUEUES = QUEUES[:-1]  # what the embedded worker consumes; orchestrate runs graphs


# RabbitMQ (amqp://): every queue is a quorum queue (replicated, durable, with a delivery
# limit), publishes are confirmed by the broker, and an unacknowledged task goes back to its
# queue as soon as its consumer's connection closes: there is no visibility timeout.
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
# The broker drops a message returned more often than this. GuardedTask refuses a task after
# MAX_DELIVERIES (3) executions that killed their worker and records the failure, so it acts
# first; the broker's limit is the backstop for messages returned without ever reaching a task
# body (a worker killed while it held them prefetched, a connection lost, a deploy), and is high
# enough that a few worker restarts never drop a healthy message.
AMQP_DELIVERY_LIMIT = 10
# RabbitMQ closes the channel of a consumer that holds a delivery unacknowledged for longer than
# its `consumer_timeout` (default 30 minutes); acks_late tasks are acknowledged when they end.
RABBITMQ_CONSUMER_TIMEOUT = 1800


def broker_is_amqp(url: str | None) -> bool:
    """True for a RabbitMQ broker URL (amqp://, amqps://, pyamqp://)."""
    return bool(url and url.startswith(AMQP_SCHEMES))


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


def amqp_queues() -> list[Queue]:
    """The fleet's queues on RabbitMQ: quorum queues with a delivery limit, bound to one topic
    exchange (Celery's native delayed delivery, used for countdowns and retry backoff on quorum
    queues, needs a topic exchange; on a direct one an ETA task would block its worker)."""
    exchange = Exchange("aml", type="topic")
    args = {"x-queue-type": "quorum", "x-delivery-limit": AMQP_DELIVERY_LIMIT}
    return [Queue(name, exchange, routing_key=name, queue_arguments=args) for name in QUEUES]


def _amqp_options() -> dict:
    """What a RabbitMQ broker adds to (or changes in) the configuration."""
    return {
        "task_queues": amqp_queues(),
        "task_default_queue_type": "quorum",
        "task_default_exchange": "aml",
        "task_default_exchange_type": "topic",
        # A queue named on a worker's command line but not in QUEUES is made the same way.
        "task_create_missing_queue_type": "quorum",
        "task_create_missing_queue_exchange_type": "topic",
        # Quorum queues do not support global QoS: Celery detects them and uses a prefetch per
        # consumer (worker_prefetch_multiplier x concurrency), and native delayed delivery.
        "worker_detect_quorum_queues": True,
        # The broker confirms every publish: a task is queued when apply_async returns.
        "broker_transport_options": {"confirm_publish": True},
        # Dead connections (a broker gone without closing TCP) are noticed within a minute.
        "broker_heartbeat": 30,
    }


@worker_init.connect
def declare_fleet_queues(sender: object = None, **_: object) -> None:
    """On RabbitMQ, declare every queue of the fleet when a worker starts. Celery binds all the
    app's queues (not only those the worker consumes) to its delayed-delivery exchanges, and
    one not yet declared makes that whole setup fail ("Native delayed delivery will not be
    available"): countdowns and retry backoff would then block a worker slot."""
    worker_app = getattr(sender, "app", None)
    if worker_app is None or not broker_is_amqp(str(worker_app.conf.broker_url)):
        return
    try:
        with worker_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3)
            channel = conn.default_channel
            for queue in worker_app.amqp.queues.values():
                queue.bind(channel).declare()
    except Exception as exc:  # noqa: BLE001 - the worker's own connection retries and reports
        log.warning("could not declare the fleet's queues on the broker: %s", exc)


def build_config(settings: Settings) -> dict:
    """The Celery configuration for these settings (pure: no connection is made)."""
    broker = settings.celery_broker_url or "memory://localhost/"
    backend = settings.effective_result_backend
    if settings.celery_broker_url and not backend:
        raise ConfigError(
            "CELERY_RESULT_BACKEND is required when the broker is not Redis "
            "(set it to a redis:// URL)"
        )
    if settings.celery_broker_url and not settings.effective_redis_url:
        raise ConfigError(
            "REDIS_URL is required when the broker is not Redis: task leases, delivery counts "
            "and fleet-wide LLM limits live there (set it to a redis:// URL)"
        )
    amqp = broker_is_amqp(broker)
    visibility = settings.celery_visibility_timeout
    # On RabbitMQ the visibility timeout does not exist, but a task must end (and be
    # acknowledged) well before the broker's consumer_timeout closes its channel.
    soft, hard = time_limits(min(visibility, RABBITMQ_CONSUMER_TIMEOUT) if amqp else visibility)
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
    config = {
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
    if amqp:
        config.update(_amqp_options())
    return config


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
