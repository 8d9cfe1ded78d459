"""Session lifecycle with real workers: reconnects, a message after migration, and a worker
killed while it holds the migration timer."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from config.settings import Settings
from conversation.bootstrap import Container
from tests.workers import (
    kill_group,
    producer,
    running_worker,
    start_worker_group,
    wait_until,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def services(settings: Settings):  # noqa: ANN201
    container = Container(settings)
    app = producer(settings)
    yield container, app
    app.close()
    container.close()


def send(app, name: str, queue: str, **kwargs: object) -> None:  # noqa: ANN001
    app.send_task(name, kwargs=kwargs, queue=queue)


def say(app, session: str, text: str, **extra: object) -> None:  # noqa: ANN001
    send(app, "conversation.save_message", "conversation.save", tenant_id="acme",
         session_id=session, agent_id="bot", role="user", content=text,
         message_id="".join(c if c.isalnum() else "-" for c in text), **extra)


def test_reconnect_inside_the_grace_keeps_the_conversation_active(
    services, test_var_dir: Path
) -> None:
    container, app = services
    with running_worker(container.settings, test_var_dir / "w-reconnect.log"):
        say(app, "rc-1", "hello")
        conversation_id = wait_until(
            lambda: container.active_store.session_conversation("acme", "rc-1"), what="saved")
        send(app, "conversation.session_closed", "conversation.sessions",
             tenant_id="acme", session_id="rc-1")
        wait_until(lambda: (container.active_store.session_state("rc-1") or 0)
                   and container.active_store.session_state("rc-1").closed_at, what="closed")
        send(app, "conversation.session_opened", "conversation.sessions",
             tenant_id="acme", session_id="rc-1")
        wait_until(lambda: container.active_store.session_state("rc-1").closed_at is None,
                   what="reopened")
        time.sleep(container.settings.session_grace_seconds + 2)  # the timer fires, stale
        assert container.active_store.get_conversation(conversation_id) is not None
        assert container.repository.get_conversation(conversation_id) is None

        # A close that nobody cancels migrates it.
        send(app, "conversation.session_closed", "conversation.sessions",
             tenant_id="acme", session_id="rc-1")
        wait_until(lambda: container.repository.get_conversation(conversation_id),
                   what="migrated after the second close")
        # A reconnect after the grace finds a new conversation for new messages; the old one
        # is still reachable by its id, in PostgreSQL.
        send(app, "conversation.session_opened", "conversation.sessions",
             tenant_id="acme", session_id="rc-1")
        say(app, "rc-1", "late, for the old one", conversation_id=conversation_id)
        say(app, "rc-1", "a new chat")
        wait_until(lambda: len(container.repository.messages(conversation_id)) == 2,
                   what="the late message in PostgreSQL")
        new_id = wait_until(
            lambda: container.active_store.session_conversation("acme", "rc-1"),
            what="a new conversation")
        assert new_id != conversation_id
        assert [m.content for m in container.repository.messages(conversation_id)] == [
            "hello", "late, for the old one"]
        wait_until(lambda: [m.content for m in container.active_store.messages(new_id)]
                   == ["a new chat"], what="the new chat")


def test_a_worker_killed_holding_the_timer_is_recovered_by_cleanup(
    services, test_var_dir: Path
) -> None:
    container, app = services
    broker = redis.Redis.from_url(container.settings.broker_url or "")
    doomed = start_worker_group(
        container.settings, test_var_dir / "w-doomed.log",
        ("conversation.sessions", "conversation.migration", "conversation.save",
         "conversation.stats"), "doomed")
    try:
        say(app, "kill-1", "before the crash")
        conversation_id = wait_until(
            lambda: container.active_store.session_conversation("acme", "kill-1"),
            timeout=60, what="saved by the doomed worker")
        send(app, "conversation.session_closed", "conversation.sessions",
             tenant_id="acme", session_id="kill-1")

        def timer_held() -> bool:
            return any(b"conversation.migrate_closed" in body
                       for body in broker.hvals("unacked"))

        wait_until(timer_held, timeout=30, what="the worker to hold the migration timer")
    finally:
        kill_group(doomed)

    with running_worker(container.settings, test_var_dir / "w-rescuer.log"):
        # The timer is lost with the worker: the broker keeps it for its visibility timeout.
        time.sleep(container.settings.session_grace_seconds * 2 + 1)
        assert container.active_store.get_conversation(conversation_id) is not None
        send(app, "conversation.cleanup", "conversation.stats")
        wait_until(lambda: container.repository.get_conversation(conversation_id),
                   timeout=30, what="cleanup to migrate the conversation")
    assert [m.content for m in container.repository.messages(conversation_id)] == [
        "before the crash"]
    assert container.active_store.get_conversation(conversation_id) is None


def test_a_burst_of_closes_is_migrated_whole_and_once(services, test_var_dir: Path) -> None:
    """Forty sessions closed at once: their timers fire together, one migration lead takes
    them in batches while the others only mark theirs; every conversation lands whole."""
    container, app = services
    sessions = [f"burst-{s}" for s in range(40)]
    send(app, "conversation.save_messages", "conversation.save", messages=[
        {"tenant_id": "acme", "session_id": session, "agent_id": "bot",
         "role": "user" if i % 2 == 0 else "assistant", "content": f"{session} says {i}",
         "message_id": f"{session}-{i}", "created_at": f"2026-03-01T10:00:0{i}Z"}
        for session in sessions for i in range(3)
    ])
    with running_worker(container.settings, test_var_dir / "w-burst.log"):
        conversations = wait_until(
            lambda: all(container.active_store.session_conversation("acme", s) for s in sessions)
            and [container.active_store.session_conversation("acme", s) for s in sessions],
            what="every session saved")
        for session in sessions:
            send(app, "conversation.session_closed", "conversation.sessions",
                 tenant_id="acme", session_id=session)
        wait_until(lambda: all(container.repository.get_conversation(c) for c in conversations),
                   timeout=60, what="every conversation in PostgreSQL")
        # The last timers may still be running (finding nothing left): let the queue drain.
        wait_until(lambda: not container.active_store.ready_migrations(1), timeout=30,
                   what="no conversation left marked ready")
    for session, conversation_id in zip(sessions, conversations, strict=True):
        assert [m.content for m in container.repository.messages(conversation_id)] == [
            f"{session} says {i}" for i in range(3)]
        assert container.active_store.get_conversation(conversation_id) is None
    log = (test_var_dir / "w-burst.log").read_text()
    assert "Traceback" not in log and "Retry in" not in log and "dead letter" not in log


def test_a_burst_of_closes_due_already_is_migrated_whole_and_once(
    services, test_var_dir: Path
) -> None:
    """Closes whose grace has passed when they arrive (as a grace of 0 makes every close):
    their second's timer fires at once and, less than a pass being ready, is set again while
    the burst goes on, then leads; every conversation lands whole, and nothing stays ready."""
    from datetime import UTC, datetime, timedelta

    container, app = services
    tag = container.settings.redis_key_prefix.strip(":")
    sessions = [f"due-{tag}-{s}" for s in range(40)]
    send(app, "conversation.save_messages", "conversation.save", messages=[
        {"tenant_id": "acme", "session_id": session, "agent_id": "bot",
         "role": "user" if i % 2 == 0 else "assistant", "content": f"{session} says {i}",
         "message_id": f"{session}-{i}", "created_at": f"2026-03-01T10:00:0{i}Z"}
        for session in sessions for i in range(3)
    ])
    with running_worker(container.settings, test_var_dir / "w-due.log"):
        conversations = wait_until(
            lambda: all(container.active_store.session_conversation("acme", s) for s in sessions)
            and [container.active_store.session_conversation("acme", s) for s in sessions],
            what="every session saved")
        closed_at = (datetime.now(UTC) - timedelta(
            seconds=container.settings.session_grace_seconds + 5)).isoformat()
        for session in sessions:
            send(app, "conversation.session_closed", "conversation.sessions",
                 tenant_id="acme", session_id=session, closed_at=closed_at)
        wait_until(lambda: all(container.repository.get_conversation(c) for c in conversations),
                   timeout=60, what="every conversation in PostgreSQL")
        wait_until(lambda: not container.active_store.ready_migrations(1), timeout=30,
                   what="no conversation left marked ready")
    for session, conversation_id in zip(sessions, conversations, strict=True):
        assert [m.content for m in container.repository.messages(conversation_id)] == [
            f"{session} says {i}" for i in range(3)]
        assert container.active_store.get_conversation(conversation_id) is None
    log = (test_var_dir / "w-due.log").read_text()
    assert "Traceback" not in log and "Retry in" not in log and "dead letter" not in log


def test_sessions_closed_migrates_each_session_and_dead_letters_a_bad_item_alone(
    services, test_var_dir: Path
) -> None:
    """One sessions_closed for a few sessions through a real worker: they share their
    second's timer and land in PostgreSQL; an invalid item is dead-lettered alone."""
    from sqlalchemy import select

    from conversation.adapters.postgres.schema import dead_letters

    container, app = services
    tag = container.settings.redis_key_prefix.strip(":")
    sessions = [f"many-{tag}-{s}" for s in range(3)]
    bad = {"tenant_id": "acme", "session_id": "not:valid"}
    send(app, "conversation.save_messages", "conversation.save", messages=[
        {"tenant_id": "acme", "session_id": session, "agent_id": "bot", "role": "user",
         "content": f"{session} says bye", "message_id": f"{session}-bye"}
        for session in sessions])
    with running_worker(container.settings, test_var_dir / "w-many.log"):
        conversations = wait_until(
            lambda: all(container.active_store.session_conversation("acme", s) for s in sessions)
            and [container.active_store.session_conversation("acme", s) for s in sessions],
            what="every session saved")
        send(app, "conversation.sessions_closed", "conversation.sessions", sessions=[
            {"tenant_id": "acme", "session_id": sessions[0]}, bad,
            *({"tenant_id": "acme", "session_id": s} for s in sessions[1:])])
        wait_until(lambda: all(container.repository.get_conversation(c) for c in conversations),
                   timeout=60, what="every conversation in PostgreSQL")

    def letters() -> list:
        with container.engine.connect() as connection:
            return [row.kwargs for row in connection.execute(select(dead_letters).where(
                dead_letters.c.task_name == "conversation.sessions_closed"))
                if row.kwargs.get("sessions") == [bad]]

    assert len(wait_until(letters, what="the bad item's dead letter")) == 1
    for session, conversation_id in zip(sessions, conversations, strict=True):
        assert [m.content for m in container.repository.messages(conversation_id)] == [
            f"{session} says bye"]
