"""Publishing tasks by name, as any producer would: the scheduler port over Celery."""
from __future__ import annotations

from typing import Any, Protocol

from config.celery import DEAD_LETTER_QUEUE, MIGRATION_QUEUE, SUMMARY_QUEUE, WORK_QUEUES
from conversation.adapters.redis import RedisKeys

# A context read asks for a summary at most this often per conversation.
SUMMARY_REQUEST_INTERVAL = 30


class TaskSender(Protocol):
    def send_task(self, name: str, *, kwargs: dict[str, Any], **options: Any) -> Any: ...


class CeleryScheduler:
    def __init__(self, sender: TaskSender) -> None:
        self.sender = sender

    def schedule_close_timer(self, second: int, countdown: float) -> None:
        self.sender.send_task(
            "conversation.migrate_closed",
            kwargs={"second": second},
            queue=MIGRATION_QUEUE,
            countdown=countdown,
        )


class CelerySummaryRequests:
    """Publishes `conversation.summarise`, at most once per interval per conversation."""

    def __init__(self, sender: TaskSender, redis_client: Any, prefix: str = "") -> None:
        self.sender = sender
        self.redis = redis_client
        self.keys = RedisKeys(prefix)

    def request(self, conversation_id: str, budget: int) -> None:
        if not self.redis.set(
            self.keys.summary_requested(conversation_id), "1", nx=True,
            ex=SUMMARY_REQUEST_INTERVAL,
        ):
            return
        self.sender.send_task(
            "conversation.summarise",
            kwargs={"conversation_id": conversation_id, "budget": budget},
            queue=SUMMARY_QUEUE,
        )


def queue_depths(app: Any) -> dict[str, int]:
    """Messages waiting in each of the service's queues and the DLQ, on Redis or RabbitMQ
    alike (a passive declare; a queue that does not exist yet holds nothing)."""
    depths: dict[str, int] = {}
    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1)
        for queue in (*WORK_QUEUES, DEAD_LETTER_QUEUE):
            channel = connection.channel()
            try:
                depths[queue] = int(channel.queue_declare(queue=queue, passive=True)[1])
            except Exception:  # NOT_FOUND: never declared, so empty
                depths[queue] = 0
            finally:
                try:
                    channel.close()
                except Exception:  # RabbitMQ closed it already on NOT_FOUND
                    pass
    return depths
