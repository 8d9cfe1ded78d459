"""A payload that kills its worker process is retried a bounded number of times, then
dead-lettered with that reason; the other tasks go on."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from config.settings import Settings
from conversation.adapters.postgres.schema import dead_letters
from conversation.bootstrap import Container
from tasks.base import DomainTask
from tests.workers import producer, running_worker, wait_until

pytestmark = pytest.mark.e2e


def test_a_task_that_kills_its_worker_ends_in_the_dead_letter_queue(
    settings: Settings, test_var_dir: Path
) -> None:
    container = Container(settings)
    app = producer(settings)
    prefix = settings.redis_key_prefix
    tenant = f"crash-{prefix.strip(':')}"

    def runs(payload: str) -> int:
        return int(container.redis.get(f"{prefix}crash-runs:{payload}") or 0)

    def letters() -> list:
        with container.engine.connect() as connection:
            return connection.execute(select(dead_letters).where(
                dead_letters.c.task_name == "test.crash_worker",
                dead_letters.c.kwargs["payload"].astext == "poison",
                dead_letters.c.kwargs["tenant"].astext == tenant)).all()

    def save(i: int) -> None:
        app.send_task("conversation.save_message", kwargs={
            "tenant_id": tenant, "session_id": "crash-s", "agent_id": "bot", "role": "user",
            "content": f"message {i}", "message_id": f"m{i}"}, queue="conversation.save")

    try:
        with running_worker(settings, test_var_dir / "w-crash.log", concurrency=2,
                            app_module="tests.crash_app"):
            app.send_task("test.crash_worker", kwargs={"payload": "poison", "tenant": tenant},
                          queue="conversation.save")
            for i in range(10):
                save(i)
            app.send_task("test.crash_worker", kwargs={"payload": "fine", "tenant": tenant},
                          queue="conversation.save")
            letter = wait_until(letters, timeout=60, what="the killer's dead letter")[0]
            def saved() -> bool:
                # Read each time: the conversation exists only once a save went through.
                conversation = container.active_store.session_conversation(tenant, "crash-s")
                return bool(conversation) and container.active_store.message_count(
                    conversation) == 10

            wait_until(saved, what="the other tasks' messages")
            assert runs("fine") == 1
        assert runs("poison") == DomainTask.max_retries + 1  # the first run and its retries
        assert len(letters()) == 1
        assert letter.error.startswith("WorkerLost: worker lost 4 times")
        assert "SIGKILL" in letter.error
        assert letter.attempts == DomainTask.max_retries + 1
    finally:
        app.close()
        container.close()
