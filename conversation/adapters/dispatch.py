"""Publishing tasks by name, as any producer would: the scheduler port over Celery."""
from __future__ import annotations

from typing import Any, Protocol

from config.celery import MIGRATION_QUEUE


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
