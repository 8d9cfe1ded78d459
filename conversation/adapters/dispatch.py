"""Publishing tasks by name, as any producer would: the scheduler port over Celery."""
from __future__ import annotations

from typing import Any, Protocol

from config.celery import MIGRATION_QUEUE, SUMMARY_QUEUE
from conversation.adapters.redis_store import RedisKeys

# A context read asks for a summary at most this often per conversation.
SUMMARY_REQUEST_INTERVAL = 30


class TaskSender(Protocol):
    def send_task(self, name: str, *, kwargs: dict[str, Any], **options: Any) -> Any: ...


class CeleryScheduler:
    def __init__(self, sender: TaskSender) -> None:
        self.sender = sender

    def schedule_migration(self, conversation_id: str, generation: int, countdown: float) -> None:
        self.sender.send_task(
            "conversation.migrate_conversation",
            kwargs={"conversation_id": conversation_id, "generation": generation},
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
