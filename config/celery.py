"""Celery configuration: explicit queues and routes, JSON only, the beat schedule.

Queue and task names are the public contract (CONTRACT.md section 1); `conversation.client`
repeats them for producers that do not import the service.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from kombu import Exchange, Queue

from config.settings import ConfigurationError, Settings

SAVE_QUEUE = "conversation.save"
CONTEXT_QUEUE = "conversation.context"
SESSIONS_QUEUE = "conversation.sessions"
MIGRATION_QUEUE = "conversation.migration"
STATS_QUEUE = "conversation.stats"
# Internal: summaries for the summary buffer, built off the request path.
SUMMARY_QUEUE = "conversation.summaries"
DEAD_LETTER_QUEUE = "conversation.dlq"

# Every queue a worker consumes by default; the dead-letter queue is for operators only.
WORK_QUEUES = (
    SAVE_QUEUE, CONTEXT_QUEUE, SESSIONS_QUEUE, MIGRATION_QUEUE, STATS_QUEUE, SUMMARY_QUEUE
)

TASK_QUEUES: dict[str, str] = {
    "conversation.save_message": SAVE_QUEUE,
    "conversation.save_messages": SAVE_QUEUE,
    "conversation.get_context": CONTEXT_QUEUE,
    "conversation.session_closed": SESSIONS_QUEUE,
    "conversation.sessions_closed": SESSIONS_QUEUE,
    "conversation.session_opened": SESSIONS_QUEUE,
    "conversation.migrate_conversation": MIGRATION_QUEUE,
    # Internal: the timer that closes within one second share (conversation.services.sessions).
    "conversation.migrate_closed": MIGRATION_QUEUE,
    # Internal: what a quarantine record's replay sends (conversation.adapters.dead_letters).
    "conversation.migrate_quarantined": MIGRATION_QUEUE,
    "conversation.aggregate_stats": STATS_QUEUE,
    "conversation.cleanup": STATS_QUEUE,
    "conversation.index_search": STATS_QUEUE,
    # Internal: an erasure's pass over the dead-letter queue (tasks/erasure_tasks.py).
    "conversation.erase_queued_letters": STATS_QUEUE,
    "conversation.summarise": SUMMARY_QUEUE,
}

_exchange = Exchange("conversation", type="direct")


def queues() -> list[Queue]:
    return [Queue(name, _exchange, routing_key=name) for name in (*WORK_QUEUES, DEAD_LETTER_QUEUE)]


def _beat_redis(settings: Settings) -> str | None:
    """Beat's Redis, or None where there is none (workers and producers run without one;
    beat itself refuses to start, saying why)."""
    try:
        return settings.beat_redis()
    except ConfigurationError:
        return None


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings for these settings (no connection is made here)."""
    return {
        "broker_url": settings.require("broker_url"),
        "result_backend": settings.require("result_backend"),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "task_queues": queues(),
        "task_default_queue": SAVE_QUEUE,
        "task_default_exchange": _exchange.name,
        "task_routes": {
            name: {"queue": queue, "routing_key": queue} for name, queue in TASK_QUEUES.items()
        },
        # A typo in a queue name must fail loudly instead of creating a queue nobody consumes.
        "task_create_missing_queues": False,
        # Only get_context returns something; the others would fill the backend with None.
        "task_ignore_result": True,
        "result_expires": 3600,
        # (How much of a result the worker renders for its success line and events is not a
        # setting: Celery reads it from the task, `resultrepr_maxsize`; get_context sets it.)
        # Acknowledge after the work is done, so a killed worker's task is redelivered.
        "task_acks_late": True,
        # ...a bounded number of times: a task whose pool process dies is retried within its
        # max_retries, then dead-lettered ("worker lost"); tasks.base.DomainTask also bounds
        # the broker's redeliveries when the whole worker dies with it. The reject (requeue)
        # is only the fallback should sending that retry fail.
        "task_retry_on_worker_lost": True,
        "task_reject_on_worker_lost": True,
        # A small prefetch: with late acks, prefetched tasks of a killed worker wait for the
        # visibility timeout before another worker gets them, so keep that window short.
        # Weighed for issue 18 and kept, with late acks: early acks would drop kombu's unacked
        # bookkeeping (two Redis round trips a task), and with it the contract's "never lost"
        # when a worker dies mid-save; a larger prefetch only keeps more tasks waiting in a
        # dying worker. What a save costs beyond Celery's own is its work (validation, the
        # token count, one script call): the save path keeps that small instead.
        "worker_prefetch_multiplier": 4,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout,
            # Look for overdue unacknowledged tasks every few seconds (one cheap sorted-set
            # query) rather than kombu's default of about every 100 s, so a dead worker's
            # tasks come back soon after their visibility timeout.
            "unacked_restore_interval": max(1, min(10, settings.broker_visibility_timeout // 2)),
            "unacked_restore_throttle": 1,
            # A worker killed while it held the restore lock blocks every restore until the
            # lock expires: never for longer than the visibility timeout itself.
            "unacked_mutex_expire": min(300, settings.broker_visibility_timeout),
        },
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "worker_hijack_root_logger": False,
        # Task events cost a publish per task state (received, started, succeeded), and Flower,
        # which asks workers for them (`enable_events`), decodes every one: on 2 cores that
        # more than halved save_message's rate under `make run` (254 against 621 tasks/s,
        # measured by `make bench`). So they are off, on purpose, Flower included: it still
        # shows the workers, their pools and the queues, and /metrics counts every task;
        # FLOWER_TASK_EVENTS=true has Flower switch them on (its live task list).
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        # Beat HA: celery-redbeat keeps the schedule in Redis behind a lock, so any number of
        # beat processes can run and only the lock holder sends. The holder renews the lock
        # every loop (a third of the lock's life at most); if it dies, another takes over
        # once the lock expires (BEAT_LOCK_SECONDS). That Redis is a plain one, never the
        # active store (BEAT_REDIS_URL, else the broker's): beat keeps scheduling while the
        # active store is down, and redbeat cannot talk to a Redis Cluster. Our scheduler
        # rides out an outage of beat's own Redis instead of exiting (tasks/beat.py).
        "beat_scheduler": "tasks.beat.ResilientRedBeatScheduler",
        "redbeat_redis_url": _beat_redis(settings),
        # Never block a tick for ever on a Redis that stopped answering.
        "redbeat_redis_options": {"socket_timeout": 5, "socket_connect_timeout": 5},
        "redbeat_key_prefix": f"{settings.redis_key_prefix}redbeat:",
        "redbeat_lock_timeout": settings.beat_lock_seconds,
        "beat_max_loop_interval": max(1, min(5, settings.beat_lock_seconds // 3)),
        "beat_schedule": {
            "aggregate-stats": {
                "task": "conversation.aggregate_stats",
                "schedule": timedelta(seconds=settings.beat_interval_seconds),
                "options": {"queue": STATS_QUEUE},
            },
            "cleanup": {
                "task": "conversation.cleanup",
                "schedule": timedelta(seconds=settings.beat_interval_seconds),
                "options": {"queue": STATS_QUEUE},
            },
            # Search vectors of the conversations migrated since (internal task).
            "index-search": {
                "task": "conversation.index_search",
                "schedule": timedelta(seconds=settings.beat_interval_seconds),
                "options": {"queue": STATS_QUEUE},
            },
        },
    }
