"""Dead letters: the task's message on `conversation.dlq`, a durable row, an ERROR line, an alert.

No worker consumes `conversation.dlq`: it is the operators' queue. The PostgreSQL row is what
`conversation dlq list|replay|purge` works on; a replay publishes the original task by name
again, with fresh retries.
"""
from __future__ import annotations

import json
import logging
import math
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kombu import Connection, Exchange, Producer, Queue
from sqlalchemy import Engine, delete, func, select

from config.celery import DEAD_LETTER_QUEUE, MIGRATION_QUEUE, TASK_QUEUES
from conversation.adapters.metrics import DEAD_LETTERS, QUARANTINED
from conversation.adapters.postgres.schema import dead_letters

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
    # False for a letter whose kwargs are already only a preview (an over-size task): it is
    # recorded as such, and replay never sends it.
    replayable: bool = True

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


# The `kwargs` column holds the whole payload up to this size; beyond, a preview, and the
# whole payload goes out of line, compressed, in `payload` (what replay sends).
MAX_RECORDED_BYTES = 256 * 1024
MAX_RECORDED_DEPTH = 64
# Kept in a preview, so operators (and erasure) still see whose payload it is.
_IDENTIFIERS = ("tenant_id", "session_id", "agent_id", "conversation_id", "message_id")


def _json_safe(value: Any) -> Any:
    """Kwargs as JSON can hold them: a hostile payload must still be recorded, not crash us."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (ValueError, RecursionError):
        text = json.dumps(repr(value)[:10_000], ensure_ascii=False)
    # PostgreSQL's JSON refuses lone surrogates (invalid UTF-8): record them as U+FFFD.
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_RECORDED_BYTES or _too_deep(value):
        return {"_truncated": True, "bytes": len(text), **_identifiers(value),
                "preview": text[:10_000]}
    return _readable(json.loads(text))


def _readable(value: Any) -> Any:
    """What jsonb holds of a value: NUL shown as U+FFFD, NaN and infinities as text. This copy
    is for reading; when it differs, replay sends the exact `payload` (see `_exact`)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {_readable(k): _readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_readable(item) for item in value]
    return value


def _identifiers(value: Any) -> dict[str, Any]:
    """A payload's identifiers (its items' too, for a batch): what a preview still says."""
    if not isinstance(value, dict):
        return {}
    kept: dict[str, Any] = {k: v for k in _IDENTIFIERS if isinstance(v := value.get(k), str) and len(v) <= 128}
    if isinstance(value.get("messages"), list):
        kept["messages"] = [_identifiers(item) for item in value["messages"][:1000]]
    return kept


def _exact(kwargs: Any) -> tuple[Any, bytes | None, bool]:
    """(what the `kwargs` column holds, the compressed exact payload when that is not it,
    whether a replay can send the payload as it came)."""
    recorded = _json_safe(kwargs)
    preview = isinstance(recorded, dict) and "_truncated" in recorded
    try:
        # ensure_ascii escapes NUL and lone surrogates, so the text reads back exactly. No
        # NaN: the service's JSON writer (orjson) would send it as null, another payload.
        text = json.dumps(kwargs, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return recorded, None, False  # nothing a replay could send as it came
    if not preview and json.loads(text) == recorded:
        return recorded, None, True
    return recorded, zlib.compress(text.encode("ascii")), True


def payload_of(row: Any) -> Any:
    """The kwargs a replay sends for a recorded dead letter, or None when it has none whole."""
    if row.payload is not None:
        return json.loads(zlib.decompress(row.payload))
    if not row.replayable or (isinstance(row.kwargs, dict) and row.kwargs.get("_truncated")):
        return None  # a preview (or an old row's): never sent as if it were the payload
    return row.kwargs


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

    def send(self, letter: DeadLetter, *, required: tuple[str, ...] = ()) -> None:
        """Every channel is tried; one failing does not stop the others. The first failure of
        a `required` channel is raised once all were tried."""
        if letter.replayable:
            recorded, payload, replayable = _exact(letter.kwargs)
        else:  # never encoded whole: it may be the over-size payload itself
            recorded, payload, replayable = (
                {"_truncated": True, **_identifiers(letter.kwargs)}, None, False)
        letter = DeadLetter(**{**letter.__dict__, "kwargs": recorded, "replayable": replayable})
        DEAD_LETTERS.labels(task=letter.task_name).inc()
        log.error(
            "dead letter: %s failed after %d attempt(s): %s",
            letter.task_name,
            letter.attempts,
            letter.error,
            extra={"dead_letter": letter.record()},
        )
        channels = {"publish": lambda: self._publish(letter),
                    "store": lambda: self._store(letter, payload),
                    "alert": lambda: self._alert(letter)}
        failure: Exception | None = None
        for name, channel in channels.items():
            try:
                channel()
            except Exception as exc:
                log.exception("dead letter channel %s failed", name)
                if name in required and failure is None:
                    failure = exc
        if failure is not None:
            raise failure

    def quarantine(self, conversation_id: str, reason: str) -> None:
        """Migration set a conversation aside (a store refused its data): a dead letter whose
        replay migrates it again, once an operator fixed it or its cause. Its row must be
        stored (it is what `dlq list` shows and replay sends): a store failure raises, so the
        migration does not mark the conversation quarantined."""
        QUARANTINED.inc()
        self.send(required=("store",), letter=DeadLetter(
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

    def _store(self, letter: DeadLetter, payload: bytes | None = None) -> None:
        if self.engine is None:
            return
        with self.engine.begin() as connection:
            connection.execute(
                dead_letters.insert().values(
                    **letter.record(), payload=payload, replayable=letter.replayable,
                    created_at=datetime.now(UTC),
                )
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
        # Not the out-of-line payload itself (megabytes of compressed JSON): its size.
        columns = [c for c in dead_letters.c if c.name != "payload"]
        query = (
            select(*columns, func.octet_length(dead_letters.c.payload).label("payload_bytes"))
            .order_by(dead_letters.c.id.desc()).limit(limit)
        )
        if not include_replayed:
            query = query.where(dead_letters.c.replayed_at.is_(None))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def replay(self, sender: Any, ids: Sequence[int] | None = None) -> int:
        """Publish the original tasks again by name, whole; mark their rows replayed. A letter
        kept only as a preview (never replayable) is skipped and stays listed."""
        assert self.engine is not None
        query = select(dead_letters).where(dead_letters.c.replayed_at.is_(None))
        if ids:
            query = query.where(dead_letters.c.id.in_(ids))
        replayed = 0
        with self.engine.begin() as connection:
            for row in connection.execute(query.with_for_update()).all():
                kwargs = payload_of(row)
                if kwargs is None:
                    log.warning("dead letter %s is a preview only: not replayed", row.id)
                    continue
                queue = TASK_QUEUES.get(row.task_name, row.queue)
                sender.send_task(row.task_name, kwargs=kwargs, queue=queue)
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
