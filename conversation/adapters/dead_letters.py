"""Dead letters: the task's message on `conversation.dlq`, a durable row, an ERROR line, an alert.

No worker consumes `conversation.dlq`: it is the operators' queue. The PostgreSQL row is what
`conversation dlq list|replay|purge` works on; a replay publishes the original task by name
again, with fresh retries.
"""
from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kombu import Connection, Exchange, Producer, Queue
from sqlalchemy import Engine, delete, func, select

from config.celery import DEAD_LETTER_QUEUE, MIGRATION_QUEUE, TASK_QUEUES
from conversation.adapters.metrics import DEAD_LETTERS, QUARANTINED
from conversation.adapters.sql_schema import dead_letters

log = logging.getLogger("conversation.dead_letters")

# A quarantine record replays as this task: the conversation's migration, tried again.
QUARANTINE_TASK = "conversation.migrate_quarantined"


@dataclass(frozen=True)
class DeadLetter:
    task_name: str
    kwargs: dict[str, Any]
    error: str
    queue: str
    attempts: int = 1
    reasons: Any = None
    traceback: str | None = None
    task_id: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "task_name": self.task_name,
            "queue": self.queue,
            "kwargs": self.kwargs,
            "error": self.error,
            "reasons": self.reasons,
            "traceback": self.traceback,
            "attempts": self.attempts,
        }


# A dead letter keeps the whole payload (for replay) up to this size; beyond, a preview.
MAX_RECORDED_BYTES = 256 * 1024
MAX_RECORDED_DEPTH = 64


def _json_safe(value: Any) -> Any:
    """Kwargs as JSON can hold them: a hostile payload must still be recorded, not crash us."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (ValueError, RecursionError):
        text = json.dumps(repr(value)[:10_000], ensure_ascii=False)
    # PostgreSQL's JSON refuses lone surrogates (invalid UTF-8): record them as U+FFFD.
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_RECORDED_BYTES or _too_deep(value):
        return {"_truncated": True, "bytes": len(text), "preview": text[:10_000]}
    return json.loads(text)


def _too_deep(value: Any, limit: int = MAX_RECORDED_DEPTH) -> bool:
    """Deeper than any valid payload: kept as a preview, which every JSON reader can load."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


class DeadLetterOffice:
    def __init__(
        self,
        engine: Engine | None,
        broker_url: str,
        alert_webhook_url: str | None = None,
    ) -> None:
        self.engine = engine
        self.broker_url = broker_url
        self.alert_webhook_url = alert_webhook_url

    def send(self, letter: DeadLetter) -> None:
        """Every channel is tried; one failing does not stop the others."""
        letter = DeadLetter(**{**letter.__dict__, "kwargs": _json_safe(letter.kwargs)})
        DEAD_LETTERS.labels(task=letter.task_name).inc()
        log.error(
            "dead letter: %s failed after %d attempt(s): %s",
            letter.task_name,
            letter.attempts,
            letter.error,
            extra={"dead_letter": letter.record()},
        )
        for channel in (self._publish, self._store, self._alert):
            try:
                channel(letter)
            except Exception:
                log.exception("dead letter channel %s failed", channel.__name__)

    def quarantine(self, conversation_id: str, reason: str) -> None:
        """Migration set a conversation aside (a store refused its data): a dead letter whose
        replay migrates it again, once an operator fixed it or its cause."""
        QUARANTINED.inc()
        self.send(DeadLetter(
            task_name=QUARANTINE_TASK,
            kwargs={"conversation_id": conversation_id},
            error=f"quarantined: {reason}"[:2000],
            queue=MIGRATION_QUEUE,
            reasons={"quarantined": [reason]},
        ))

    def _publish(self, letter: DeadLetter) -> None:
        queue = Queue(DEAD_LETTER_QUEUE, Exchange("conversation", type="direct"), DEAD_LETTER_QUEUE)
        with Connection(self.broker_url, connect_timeout=5) as connection:
            producer = Producer(connection)
            producer.publish(
                {**letter.record(), "at": datetime.now(UTC).isoformat()},
                exchange=queue.exchange,
                routing_key=DEAD_LETTER_QUEUE,
                serializer="json",
                declare=[queue],
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.2},
            )

    def _store(self, letter: DeadLetter) -> None:
        if self.engine is None:
            return
        with self.engine.begin() as connection:
            connection.execute(
                dead_letters.insert().values(**letter.record(), created_at=datetime.now(UTC))
            )

    def _alert(self, letter: DeadLetter) -> None:
        if not self.alert_webhook_url:
            return
        body = json.dumps({"event": "dead_letter", **letter.record()}).encode()
        request = urllib.request.Request(
            self.alert_webhook_url, data=body, headers={"Content-Type": "application/json"}
        )
        last_error: Exception | None = None
        for _ in range(3):
            try:
                with urllib.request.urlopen(request, timeout=5):
                    return
            except OSError as exc:
                last_error = exc
        if last_error:
            raise last_error

    # --- operators ------------------------------------------------------------------------

    def list(self, limit: int = 100, include_replayed: bool = False) -> list[dict[str, Any]]:
        assert self.engine is not None
        query = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        if not include_replayed:
            query = query.where(dead_letters.c.replayed_at.is_(None))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def replay(self, sender: Any, ids: list[int] | None = None) -> int:
        """Publish the original tasks again by name; mark their rows replayed."""
        assert self.engine is not None
        query = select(dead_letters).where(dead_letters.c.replayed_at.is_(None))
        if ids:
            query = query.where(dead_letters.c.id.in_(ids))
        replayed = 0
        with self.engine.begin() as connection:
            for row in connection.execute(query.with_for_update()).all():
                queue = TASK_QUEUES.get(row.task_name, row.queue)
                sender.send_task(row.task_name, kwargs=row.kwargs, queue=queue)
                connection.execute(
                    dead_letters.update()
                    .where(dead_letters.c.id == row.id)
                    .values(replayed_at=datetime.now(UTC))
                )
                replayed += 1
        return replayed

    def purge(self) -> int:
        assert self.engine is not None
        with self.engine.begin() as connection:
            removed = connection.execute(delete(dead_letters)).rowcount
        with Connection(self.broker_url, connect_timeout=5) as connection:
            queue = Queue(DEAD_LETTER_QUEUE, Exchange("conversation", type="direct"))
            try:
                queue(connection.default_channel).purge()
            except Exception:
                log.warning("could not purge the %s queue", DEAD_LETTER_QUEUE)
        return int(removed)

    def erase_queued(self, edit: Callable[[Any], Any]) -> int:
        """Erasure on the `conversation.dlq` queue: each dead letter queued now is read once;
        `edit` gives its task payload less the erased data (None: drop it). What is left is
        published again (at the back) before the original is acknowledged, so a crash
        midway duplicates a letter rather than losing one. Returns how many were dropped or
        edited."""
        queue = Queue(DEAD_LETTER_QUEUE, Exchange("conversation", type="direct"), DEAD_LETTER_QUEUE)
        changed = 0
        with Connection(self.broker_url, connect_timeout=5) as connection:
            bound = queue(connection.default_channel)
            bound.declare()
            waiting = int(bound.queue_declare(passive=True).message_count)
            producer = Producer(connection)
            for _ in range(waiting):
                message = bound.get(no_ack=False)
                if message is None:
                    break
                letter = message.decode()
                kwargs = letter.get("kwargs") if isinstance(letter, dict) else None
                kept = edit(kwargs)
                if kept is not None:
                    producer.publish({**letter, "kwargs": kept}, exchange=queue.exchange,
                                     routing_key=DEAD_LETTER_QUEUE, serializer="json")
                if kept is not kwargs:
                    changed += 1
                message.ack()
        return changed

    def count(self) -> int:
        assert self.engine is not None
        with self.engine.connect() as connection:
            return int(
                connection.scalar(
                    select(func.count()).where(dead_letters.c.replayed_at.is_(None))
                )
                or 0
            )
