"""The domain actions: JSON in -> command -> service -> JSON out. Logic lives in the services."""
from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any

import orjson
from celery import shared_task
from marshmallow import Schema
from structlog.contextvars import bound_contextvars

from conversation.adapters.metrics import (
    CLEANUP_STEP_FAILURES,
    CONTEXT_SECONDS,
    MESSAGES_SAVED,
    MIGRATIONS,
)
from conversation.bootstrap import container
from conversation.domain.refusals import Refusal
from conversation.domain.messages import NewMessage, Role
from conversation.services.context import empty_context
from tasks.base import TRANSIENT_ERRORS, DomainTask, InvalidPayload, payload_bytes, validated
from tasks.schemas import (
    GetContextSchema,
    MigrateClosedSchema,
    MigrateConversationSchema,
    NoArgumentsSchema,
    QuarantinedConversationSchema,
    SaveMessageSchema,
    SaveMessagesSchema,
    SessionClosedSchema,
    SessionOpenedSchema,
    SessionsClosedSchema,
    SummariseSchema,
)

log = logging.getLogger(__name__)


# Message ids a producer left out are derived from the task's id and the item's place: a
# retry and a broker redelivery keep the task id, and a dead letter records the ids so
# derived, so a second attempt or a replay finds what the first stored (idempotent on
# message_id) instead of storing it again under a new id.
MESSAGE_ID_NAMESPACE = uuid.UUID("9f1c1c8e-5a34-4d0e-9a43-6c2f1b7de415")


SAVE_MESSAGE = "conversation.save_message"
SAVE_MESSAGES = "conversation.save_messages"


def derived_message_id(task_id: str, index: int | None = None) -> str:
    return uuid.uuid5(MESSAGE_ID_NAMESPACE, task_id if index is None else f"{task_id}:{index}").hex


def with_message_ids(task_name: str, kwargs: Any, task_id: str | None) -> Any:
    """A save task's kwargs with every missing message_id derived from its task id."""
    if not task_id or not isinstance(kwargs, dict):
        return kwargs
    # The names, not `save_message.name`: a shared task is a proxy, and reading its name
    # looked the task up in the app on every save (~10 us a task).
    if task_name == SAVE_MESSAGE and kwargs.get("message_id") is None:
        return {**kwargs, "message_id": derived_message_id(task_id)}
    if task_name == SAVE_MESSAGES and isinstance(kwargs.get("messages"), list):
        return {**kwargs, "messages": [
            {**item, "message_id": derived_message_id(task_id, index)}
            if isinstance(item, dict) and item.get("message_id") is None else item
            for index, item in enumerate(kwargs["messages"])
        ]}
    return kwargs


def _surely_within(kwargs: Any, limit: int) -> bool:
    """True when payload_bytes(kwargs) cannot pass `limit`, told by one C pass (orjson)
    instead of its Python walk (~3 ms a 500-message batch, most of its task's overhead).

    payload_bytes counts each string's UTF-8 bytes and 8 for any other value; the JSON text
    holds each string's bytes and more (quotes, escapes), and at least one byte for any other
    value, so 8 times its length bounds that count. What orjson cannot write (a lone
    surrogate, an integer past 64 bits) is left to the walk."""
    try:
        return 8 * len(orjson.dumps(kwargs)) <= limit
    except (TypeError, orjson.JSONEncodeError):
        return False


class SaveTask(DomainTask):
    """A save: whatever it dead-letters carries the message ids it derived."""

    abstract = True

    def oversize(self, kwargs: dict[str, Any]) -> bool:
        """Dead-letter a payload past MAX_TASK_BYTES whole (a preview, never replayed) before
        anything else reads it: neither validated, copied nor stored item by item."""
        limit = container().settings.max_task_bytes
        if _surely_within(kwargs, limit):
            return False
        if (size := payload_bytes(kwargs, limit)) <= limit:
            return False
        reason = (f"the payload is over {limit} bytes (MAX_TASK_BYTES), at least {size}: "
                  "refused whole; send it as smaller tasks")
        self.dead_letter(kwargs, InvalidPayload({"_schema": [reason]}), replayable=False)
        return True

    def still_to_save(self, kwargs: dict[str, Any], items: list[Any]) -> None:
        """What a retry of this attempt sends again, and its failure dead-letters: the
        request's kwargs, which Celery's retry() and on_failure read, narrowed to `items`.
        Items stored before a failure stay in (storing one again is idempotent on its id)."""
        if len(items) != len(kwargs.get("messages") or ()):
            self.request.kwargs = {**kwargs, "messages": items}

    def dead_letter(
        self, kwargs: Any, exc: BaseException, *, task_id: str | None = None,
        replayable: bool = True,
    ) -> None:
        """Every path that dead-letters a save (its retries spent, its worker lost, the
        redelivery cap, an item alone) records the message ids its attempts derived, so a
        replay, under a new task id, finds what they stored instead of storing it again."""
        if replayable:
            kwargs = with_message_ids(self.name, kwargs, task_id or self.request.id)
        super().dead_letter(kwargs, exc, task_id=task_id, replayable=replayable)


@cache
def _saved_counter(label: str) -> Any:
    """The outcome's counter, looked up once a process (labels() takes a lock and a lookup)."""
    return MESSAGES_SAVED.labels(label)


def _saved_label(outcome: Any) -> str:
    if isinstance(outcome, Exception) or outcome.refusal is not None:
        return "refused"
    return "saved" if outcome.stored else "duplicate"


def _new_message(payload: dict[str, Any]) -> NewMessage:
    return NewMessage(
        tenant_id=payload["tenant_id"],
        session_id=payload["session_id"],
        agent_id=payload["agent_id"],
        role=Role(payload["role"]),
        content=payload["content"],
        message_id=payload["message_id"] or uuid.uuid4().hex,
        conversation_id=payload["conversation_id"],
        created_at=payload["created_at"],
        metadata=payload["metadata"] or {},
        name=payload["name"],
        tool_calls=payload["tool_calls"],
        tool_call_id=payload["tool_call_id"],
    )


@lru_cache(maxsize=4)
def _cached_save_schema(max_message_chars: int) -> SaveMessageSchema:
    return SaveMessageSchema(max_message_chars=max_message_chars)


def _save_schema() -> SaveMessageSchema:
    # Building a marshmallow schema costs more than validating a message: build it once.
    return _cached_save_schema(container().settings.max_message_chars)


def _loaded(schema: SaveMessageSchema | SaveMessagesSchema, payload: Any) -> dict[str, Any]:
    """The payload as the schema loads it: its plain form when it has one (`load_plain`, the
    same answer for a fraction of the cost), else marshmallow's, which says why it refuses."""
    plain = schema.load_plain(payload)
    return plain if plain is not None else validated(schema, payload)


@cache
def _batch_schema() -> SaveMessagesSchema:
    return SaveMessagesSchema()


@cache
def _schema(schema_class: type[Schema]) -> Schema:
    """One instance per schema class, for the same reason (loading does not change it)."""
    return schema_class()


@shared_task(base=SaveTask, bind=True, name=SAVE_MESSAGE)
def save_message(self: SaveTask, **kwargs: Any) -> None:
    """Save one chat message to its conversation (idempotent on message_id)."""
    if self.oversize(kwargs):
        return
    payload = _loaded(_save_schema(), with_message_ids(self.name, kwargs, self.request.id))
    outcome = container().saver.save(_new_message(payload))
    _saved_counter(_saved_label(outcome)).inc()


@shared_task(base=SaveTask, bind=True, name=SAVE_MESSAGES)
def save_messages(self: SaveTask, **kwargs: Any) -> dict[str, int]:
    """Save up to 1,000 messages in one round trip; an invalid one is dead-lettered alone.
    The result counts what this attempt saved and rejected (a retry holds only the rest)."""
    if self.oversize(kwargs):
        messages = kwargs.get("messages")
        return {"saved": 0, "rejected": len(messages) if isinstance(messages, list) else 0}
    batch = _loaded(_batch_schema(), kwargs)["messages"]
    batch = with_message_ids(self.name, {"messages": batch}, self.request.id)["messages"]
    schema = _save_schema()
    valid: list[tuple[dict[str, Any], NewMessage]] = []
    for item in batch:
        try:
            if not isinstance(item, dict):
                raise InvalidPayload({"_schema": ["each message must be an object"]})
            valid.append((item, _new_message(_loaded(schema, item))))
        except InvalidPayload as exc:
            self.dead_letter({"messages": [item]}, exc)
    # A transient failure retries the task, and once its retries are spent dead-letters it:
    # both send the items still to save, with their ids, and not those dead-lettered above
    # (so they are dead-lettered once, not once per attempt, and never twice in a replay).
    self.still_to_save(kwargs, [item for item, _ in valid])
    outcomes = _save_each([command for _, command in valid])
    refused = 0
    # Counted by outcome, then added once a label: a Counter's labels() costs a lock and a
    # lookup, per message of a 500-message batch.
    counts: Counter[str] = Counter()
    for (item, _), outcome in zip(valid, outcomes, strict=True):
        counts[_saved_label(outcome)] += 1
        failure = outcome if isinstance(outcome, Exception) else (
            outcome.refusal.error() if outcome.refusal is not None else None)
        if failure is not None:
            refused += 1
            # Alone, with its message_id: a replay of it is idempotent.
            self.dead_letter({"messages": [item]}, failure)
    for label, count in counts.items():
        _saved_counter(label).inc(count)
    return {"saved": len(valid) - refused, "rejected": len(batch) - len(valid) + refused}


def _save_each(commands: list[NewMessage]) -> list[Any]:
    """The batch in one round trip; if that fails for a reason of its own (not a server's),
    each message alone, so one that storage cannot take costs only itself. A transient
    failure retries the whole task: its message ids are stable, so nothing is stored twice."""
    if not commands:
        return []
    saver = container().saver
    try:
        return list(saver.save_many(commands))
    except TRANSIENT_ERRORS:
        raise
    except Exception:
        log.warning("a batch of %d failed to save; saving its messages one by one",
                    len(commands), exc_info=True)
    outcomes: list[Any] = []
    for command in commands:
        try:
            outcomes.append(saver.save_many([command])[0])
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - this message's own failure, dead-lettered
            outcomes.append(exc)
    return outcomes


# Celery renders every result with saferepr, up to the task's resultrepr_maxsize (1,024 by
# default, and not a setting: Celery reads the task attribute), for its success line and
# events, whether or not anything logs it: for a context, ~250 us per read, more than its JSON
# (~10 us). 64 characters still name the conversation, at ~30 us (bench/context_timeline.py).
CONTEXT_REPR_CHARS = 64


@shared_task(base=DomainTask, bind=True, name="conversation.get_context", ignore_result=False,
             resultrepr_maxsize=CONTEXT_REPR_CHARS)
def get_context(self: DomainTask, **kwargs: Any) -> dict[str, Any]:
    """The context to send to a model, cut to its window (never fails the caller)."""
    try:
        payload = validated(_schema(GetContextSchema), kwargs)
    except InvalidPayload as exc:
        self.dead_letter(kwargs, exc)
        # Still the contract's context object: an invalid request never fails the caller.
        return empty_context(None, None, None, None, str(exc))
    began = time.perf_counter()
    context = container().context_builder.get_context(**payload)
    CONTEXT_SECONDS.labels(context.get("window") or "none").observe(time.perf_counter() - began)
    return context


@shared_task(base=DomainTask, bind=True, name="conversation.session_closed")
def session_closed(self: DomainTask, **kwargs: Any) -> None:
    """The user's websocket closed: migrate after the grace period unless they come back."""
    payload = validated(_schema(SessionClosedSchema), kwargs)
    container().sessions.close(payload["tenant_id"], payload["session_id"], payload["closed_at"])


@shared_task(base=DomainTask, bind=True, name="conversation.sessions_closed")
def sessions_closed(self: DomainTask, **kwargs: Any) -> dict[str, int]:
    """Up to 1,000 closes in one task; an invalid or refused one is dead-lettered alone."""
    batch = validated(_schema(SessionsClosedSchema), kwargs)["sessions"]
    schema = _schema(SessionClosedSchema)
    valid: list[tuple[Any, dict[str, Any]]] = []
    for item in batch:
        try:
            if not isinstance(item, dict):
                raise InvalidPayload({"_schema": ["each session must be an object"]})
            valid.append((item, validated(schema, item)))
        except InvalidPayload as exc:
            self.dead_letter({"sessions": [item]}, exc)
    outcomes = container().sessions.close_many(
        [(p["tenant_id"], p["session_id"], p["closed_at"]) for _, p in valid]
    ) if valid else []
    refused = 0
    for (item, _), outcome in zip(valid, outcomes, strict=True):
        if isinstance(outcome, Refusal):
            refused += 1
            self.dead_letter({"sessions": [item]}, outcome.error())  # alone: its replay closes it
    return {"closed": len(valid) - refused, "rejected": len(batch) - len(valid) + refused}


@shared_task(base=DomainTask, bind=True, name="conversation.session_opened")
def session_opened(self: DomainTask, **kwargs: Any) -> None:
    """The user reconnected: cancel a pending migration."""
    payload = validated(_schema(SessionOpenedSchema), kwargs)
    container().sessions.open(payload["tenant_id"], payload["session_id"])


def _count_migrations(outcomes: list[Any]) -> None:
    for outcome in outcomes:
        if outcome.status.value != "migrated":  # migrations themselves are counted as they land
            MIGRATIONS.labels(outcome.status.value).inc()


@shared_task(base=DomainTask, bind=True, name="conversation.migrate_conversation")
def migrate_conversation(self: DomainTask, **kwargs: Any) -> None:
    """Move a closed conversation to PostgreSQL, unless its session moved on (idempotent)."""
    payload = validated(_schema(MigrateConversationSchema), kwargs)
    outcomes = container().due_migrations.migrate_when_ready(
        payload["conversation_id"], payload["generation"]
    )
    if not outcomes:
        log.info("migration of %s: left to the running migration lead", payload["conversation_id"])
    _count_migrations(outcomes)
    if len(outcomes) == 1:
        log.info("migration of %s: %s", outcomes[0].conversation_id, outcomes[0].status.value)
    elif outcomes:
        log.info("migration of %s: led a batch of %d conversation(s)",
                 payload["conversation_id"], len(outcomes))


@shared_task(base=DomainTask, bind=True, name="conversation.migrate_closed")
def migrate_closed(self: DomainTask, **kwargs: Any) -> None:
    """The shared timer of the sessions whose grace ended within one second: migrate them
    (internal; scheduled by the first close of that second)."""
    payload = validated(_schema(MigrateClosedSchema), kwargs)
    outcomes = container().sessions.fire_timer(payload["second"])
    _count_migrations(outcomes)
    # A line per conversation, with its id bound like a task's: where a conversation went is
    # what an operator looks for (one line for 50 or more messages moved: cheap next to them).
    for outcome in outcomes:
        with bound_contextvars(conversation_id=outcome.conversation_id):
            log.info("migration of %s: %s", outcome.conversation_id, outcome.status.value)
    log.info("timer of second %d: %d conversation(s) migrated or checked", payload["second"],
             len(outcomes))


@shared_task(base=DomainTask, bind=True, name="conversation.migrate_quarantined")
def migrate_quarantined(self: DomainTask, **kwargs: Any) -> str:
    """Migrate a quarantined conversation again (its dead letter's replay, once fixed)."""
    payload = validated(_schema(QuarantinedConversationSchema), kwargs)
    outcome = container().due_migrations.retry_quarantined(payload["conversation_id"])
    if outcome.status.value != "migrated":
        MIGRATIONS.labels(outcome.status.value).inc()
    log.info("quarantined conversation %s: %s", outcome.conversation_id, outcome.status.value)
    return outcome.status.value


@shared_task(base=DomainTask, bind=True, name="conversation.summarise")
def summarise(self: DomainTask, **kwargs: Any) -> None:
    """Bring a conversation's summary up to date (internal; asked for by get_context)."""
    payload = validated(_schema(SummariseSchema), kwargs)
    outcome = container().summary_builder.refresh(payload["conversation_id"], payload["budget"])
    log.info("summary of %s: %s (%d folded)", payload["conversation_id"],
             outcome.status.value, outcome.folded)


@shared_task(base=DomainTask, bind=True, name="conversation.aggregate_stats")
def aggregate_stats(self: DomainTask, **kwargs: Any) -> dict[str, Any]:
    """Recompute the statistics buckets that changed; snapshot active conversations (beat)."""
    validated(_schema(NoArgumentsSchema), kwargs)
    report = container().statistics.aggregate()
    log.info("statistics: %d bucket(s) recomputed, %s active conversation(s)%s", report.buckets,
             report.active_conversations, " (another aggregator was running)" if report.skipped
             else "")
    return {"buckets": report.buckets, "active": report.active_conversations,
            "skipped": report.skipped}


def _cleanup_steps() -> list[tuple[str, Callable[[], dict[str, int]]]]:
    due, eraser = container().due_migrations, container().eraser

    def lost_timers() -> dict[str, int]:
        checked, migrated = due.sweep_lost_timers()
        return {"checked": checked, "migrated": migrated}

    return [
        ("sweep", lost_timers),
        ("idle", lambda: {"idle": due.migrate_idle()}),
        ("retention", lambda: {"expired": eraser.purge_expired()}),
    ]


@shared_task(base=DomainTask, bind=True, name="conversation.cleanup")
def cleanup(self: DomainTask, **kwargs: Any) -> dict[str, Any]:
    """Migrate lost-timer and idle conversations; erase what retention expired (Celery beat).
    Each step runs whatever the others did: one failing is logged, counted and reported."""
    validated(_schema(NoArgumentsSchema), kwargs)
    report: dict[str, Any] = {"checked": 0, "migrated": 0, "idle": 0, "expired": 0,
                              "failed": []}
    for step, run in _cleanup_steps():
        try:
            report.update(run())
        except Exception:
            # Not raised: a retry would run the steps that worked again, and a step that
            # fails every minute would fill the dead-letter table. The beat runs it again.
            log.exception("cleanup: the %s step failed; the other steps still run", step)
            CLEANUP_STEP_FAILURES.labels(step).inc()
            report["failed"].append(step)
    log.info("cleanup: %d overdue closed session(s), %d migrated, %d idle migrated, "
             "%d expired erased%s", report["checked"], report["migrated"], report["idle"],
             report["expired"],
             f"; failed: {', '.join(report['failed'])}" if report["failed"] else "")
    return report


@shared_task(base=DomainTask, bind=True, name="conversation.index_search")
def index_search(self: DomainTask, **kwargs: Any) -> dict[str, Any]:
    """Compute the search vectors of newly persisted messages (internal; Celery beat)."""
    validated(_schema(NoArgumentsSchema), kwargs)
    indexed = container().search_indexer.index_pending()
    log.info("search: %s conversation(s) indexed", "another indexer was running"
             if indexed is None else indexed)
    return {"conversations": indexed}
