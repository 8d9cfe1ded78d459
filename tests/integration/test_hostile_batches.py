"""Hostile batches through a real worker: one bad item costs only itself, ids derived from the
task make retries and replays idempotent, dead letters keep what a replay sends, whole."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config.settings import Settings
from conversation.adapters.dead_letters import DeadLetter
from conversation.adapters.postgres.schema import dead_letters
from conversation.bootstrap import Container
from tasks.conversation_tasks import with_message_ids
from tests.workers import producer, running_worker, wait_until

OVERFLOWING = "0001-01-01T00:00:00+01:00"  # valid ISO-8601; before year 1 once in UTC


def message(session: str, i: int, **overrides: Any) -> dict[str, Any]:
    return {"tenant_id": "hostile", "session_id": session, "agent_id": "bot",
            "role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}",
            **overrides}


def stored(container: Container, session: str, tenant: str = "hostile") -> list[Any]:
    conversation_id = container.active_store.session_conversation(tenant, session)
    return container.active_store.messages(conversation_id) if conversation_id else []


def letters(container: Container, session: str) -> list[Any]:
    """The dead letters of a session's saves, batch items included, oldest first."""
    with container.engine.connect() as connection:
        rows = connection.execute(select(dead_letters).order_by(dead_letters.c.id)).all()
    return [row for row in rows if session in str(row.kwargs)]


@pytest.fixture
def service(settings: Settings, test_var_dir: Path) -> Iterator[tuple[Container, Any]]:
    container = Container(settings)
    app = producer(settings)
    # A small task-size cap, so the over-size test stays small; every other payload fits.
    with running_worker(settings, test_var_dir / f"w-{uuid.uuid4().hex[:6]}.log",
                        concurrency=1, extra_env={"MAX_TASK_BYTES": "2000000"}):
        yield container, app
    app.close()
    container.close()


def test_one_overflowing_date_costs_only_its_own_message_and_a_replay_stores_nothing_twice(
    service: tuple[Container, Any],
) -> None:
    container, app = service
    session = f"batch-{uuid.uuid4().hex[:8]}"
    batch = [message(session, i, message_id=f"{session}-m{i}") for i in range(200)]
    batch[117]["created_at"] = OVERFLOWING
    app.send_task("conversation.save_messages", kwargs={"messages": batch},
                  queue="conversation.save")
    wait_until(lambda: letters(container, session), timeout=30, what="the dead letter")
    wait_until(lambda: len(stored(container, session)) == 199, timeout=30, what="199 stored")
    (letter,) = letters(container, session)
    assert letter.kwargs == {"messages": [batch[117]]}
    assert "created_at" in str(letter.reasons) and "UTC" in str(letter.reasons)

    # The operator replays it: refused again (still invalid), nothing stored twice.
    assert container.dead_letters.replay(container.producer, [letter.id]) == 1
    wait_until(lambda: len(letters(container, session)) == 2, what="the replay's dead letter")
    ids = [m.id for m in stored(container, session)]
    assert sorted(ids) == sorted(f"{session}-m{i}" for i in range(200) if i != 117)


def test_a_batch_without_message_ids_redelivered_or_replayed_stores_nothing_twice(
    service: tuple[Container, Any],
) -> None:
    container, app = service
    session = f"noids-{uuid.uuid4().hex[:8]}"
    batch = [message(session, i) for i in range(20)]
    task_id = str(uuid.uuid4())
    # The same task delivered twice (a broker redelivery keeps its id), then replayed from a
    # dead letter as the failing task would have recorded it.
    for _ in range(2):
        app.send_task("conversation.save_messages", kwargs={"messages": batch},
                      queue="conversation.save", task_id=task_id)
    wait_until(lambda: len(stored(container, session)) >= 20, what="the batch")
    container.dead_letters.send(DeadLetter(
        task_name="conversation.save_messages", queue="conversation.save", error="TimeoutError",
        kwargs=with_message_ids("conversation.save_messages", {"messages": batch}, task_id),
        task_id=task_id))
    (letter,) = letters(container, session)
    assert container.dead_letters.replay(container.producer, [letter.id]) == 1
    # The replay, then a marker message after it on the same queue: once the marker is stored,
    # the replay ran before it (one worker process takes one queue in order).
    app.send_task("conversation.save_message", queue="conversation.save",
                  kwargs=message(session, 99, message_id="marker"))
    wait_until(lambda: "marker" in [m.id for m in stored(container, session)],
               what="the marker")
    contents = sorted(m.content for m in stored(container, session) if m.id != "marker")
    assert contents == sorted(f"message {i}" for i in range(20))


def test_a_batch_whose_worker_died_replayed_from_its_dead_letter_stores_nothing_twice(
    service: tuple[Container, Any],
) -> None:
    """The worker-lost path (Celery's WorkerLostError past max_retries, in the worker's main
    process) dead-letters the ids the attempts derived: failed before the fix (its letter had
    no message_id, so the replay derived new ones and stored all 20 again)."""
    from billiard.exceptions import WorkerLostError

    from conversation.bootstrap import reset_container
    from tasks.base import _dead_letter_lost_worker
    from tasks.conversation_tasks import save_messages

    container, app = service
    session = f"lost-{uuid.uuid4().hex[:8]}"
    batch = [message(session, i) for i in range(20)]
    task_id = str(uuid.uuid4())
    app.send_task("conversation.save_messages", kwargs={"messages": batch},
                  queue="conversation.save", task_id=task_id)
    wait_until(lambda: len(stored(container, session)) >= 20, what="the batch")
    reset_container(Container(container.settings))  # the handler's: this test's servers
    try:
        _dead_letter_lost_worker(sender=save_messages, task_id=task_id,
                                 exception=WorkerLostError("signal 9 (SIGKILL)"),
                                 kwargs={"messages": batch})
    finally:
        reset_container(None)
    (letter,) = letters(container, session)
    assert letter.error.startswith("WorkerLost")
    assert container.dead_letters.replay(container.producer, [letter.id]) == 1
    app.send_task("conversation.save_message", queue="conversation.save",
                  kwargs=message(session, 99, message_id="marker"))
    wait_until(lambda: "marker" in [m.id for m in stored(container, session)],
               what="the marker")
    contents = sorted(m.content for m in stored(container, session) if m.id != "marker")
    assert contents == sorted(f"message {i}" for i in range(20))


def test_nul_anywhere_and_a_trailing_newline_in_an_identifier_are_refused_with_a_reason(
    service: tuple[Container, Any],
) -> None:
    container, app = service
    session = f"nul-{uuid.uuid4().hex[:8]}"
    bad = [
        message(session, 0, message_id="key", metadata={"ok": 1, "bad\x00key": "v"}),
        message(session, 1, message_id="deep", metadata={"a": [{"b": "nested\x00value"}]}),
        message(session, 2, message_id="surrogate", metadata={"a": {"b": "\ud800"}}),
        message(session, 3, message_id="nan", metadata={"a": float("nan")}),
        message(session, 4, message_id="newline", tenant_id="hostile\n"),
    ]
    for kwargs in bad:
        app.send_task("conversation.save_message", kwargs=kwargs, queue="conversation.save")
    app.send_task("conversation.save_message", queue="conversation.save",
                  kwargs=message(session, 9, message_id="good"))
    wait_until(lambda: len(letters(container, session)) == len(bad), what="five dead letters")
    wait_until(lambda: stored(container, session), what="the good message")
    assert [m.id for m in stored(container, session)] == ["good"]
    assert container.active_store.session_conversation("hostile\n", session) is None
    by_id = {row.kwargs["message_id"]: row for row in letters(container, session)}
    assert "NUL" in str(by_id["key"].reasons["metadata"])
    assert "NUL" in str(by_id["deep"].reasons["metadata"])
    assert "surrogate" in str(by_id["surrogate"].reasons["metadata"])
    assert "NaN" in str(by_id["nan"].reasons["metadata"])
    assert "letters, digits" in str(by_id["newline"].reasons["tenant_id"])


def test_a_dead_letter_past_256_kb_replays_whole(service: tuple[Container, Any]) -> None:
    container, app = service
    session = f"big-{uuid.uuid4().hex[:8]}"
    # A batch dead-lettered whole (its retries exhausted), past the 256 KB kept inline.
    batch = [message(session, i, message_id=f"big{i}", content="é" * 150_000 + f"end {i}",
                     metadata={"note": "x" * 60_000}) for i in range(2)]
    container.dead_letters.send(DeadLetter(
        task_name="conversation.save_messages", queue="conversation.save",
        error="TimeoutError: PostgreSQL", kwargs={"messages": batch}))
    (letter,) = letters(container, session)
    assert letter.kwargs["_truncated"]  # the inline copy is a preview; the payload is whole
    assert container.dead_letters.replay(container.producer, [letter.id]) == 1
    wait_until(lambda: len(stored(container, session)) == 2, what="the replayed messages")
    saved = {m.id: (m.content, m.metadata) for m in stored(container, session)}
    assert saved == {item["message_id"]: (item["content"], item["metadata"]) for item in batch}


def test_a_payload_over_the_size_cap_is_refused_whole_with_its_reason(
    service: tuple[Container, Any],
) -> None:
    container, app = service
    session = f"huge-{uuid.uuid4().hex[:8]}"
    batch = [message(session, i, message_id=f"m{i}", content="x" * 150_000) for i in range(15)]
    app.send_task("conversation.save_messages", kwargs={"messages": batch},
                  queue="conversation.save")
    app.send_task("conversation.save_message", queue="conversation.save",
                  kwargs=message(session, 99, message_id="after"))
    wait_until(lambda: stored(container, session), what="the message after it")
    (letter,) = wait_until(lambda: letters(container, session), what="the dead letter")
    assert "MAX_TASK_BYTES" in str(letter.reasons)
    assert [m.id for m in stored(container, session)] == ["after"]
    # Never replayable from a preview: replay skips it rather than send a truncated batch.
    assert container.dead_letters.replay(container.producer, [letter.id]) == 0
