"""Dead letters on both brokers: the queue, the durable record, and a replay by task name."""
from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Connection
from sqlalchemy import select

from config.settings import Settings
from conversation.adapters.postgres.schema import dead_letters
from conversation.bootstrap import Container
from tasks.conversation_tasks import derived_message_id
from tests.workers import producer, running_worker, wait_until

pytestmark = pytest.mark.e2e


def dlq_depth(broker_url: str) -> int:
    with Connection(broker_url, connect_timeout=5) as connection:
        if broker_url.startswith("amqp"):
            return int(connection.default_channel.queue_declare(
                queue="conversation.dlq", passive=True).message_count)
        return int(connection.default_channel.client.llen("conversation.dlq"))


def test_a_dead_letter_is_queued_recorded_and_replayed(broker_settings: Settings,
                                                       test_var_dir: Path) -> None:
    settings = broker_settings
    container = Container(settings)
    app = producer(settings)
    session = f"dlq-{settings.redis_key_prefix.strip(':')}"
    bad = {"tenant_id": "dlq", "session_id": session, "agent_id": "bot", "role": "wizard",
           "content": "abracadabra"}

    def rows() -> list:
        with container.engine.connect() as connection:
            return connection.execute(select(dead_letters).where(
                dead_letters.c.kwargs["session_id"].astext == session
            ).order_by(dead_letters.c.id)).all()

    try:
        with running_worker(settings, test_var_dir / "w-dlq.log"):
            app.send_task("conversation.save_message", kwargs=bad, queue="conversation.save")
            first = wait_until(rows, what="the dead letter's record")[0]
            # Recorded with the message id the task derived (its task id): a replay is the
            # same message, idempotent.
            recorded = {**bad, "message_id": derived_message_id(first.task_id)}
            assert (first.queue, first.attempts, first.kwargs) == (
                "conversation.save", 1, recorded)
            assert "role" in first.reasons
            assert dlq_depth(settings.broker_url or "") >= 1

            # Replay publishes the original task by name, with fresh retries: still invalid,
            # it comes back as a new dead letter, and the first one is marked replayed.
            assert container.dead_letters.replay(container.producer, [first.id]) == 1
            wait_until(lambda: len(rows()) == 2, what="the replayed task's dead letter")
        first, second = rows()
        assert first.replayed_at is not None and second.replayed_at is None
        assert second.attempts == 1 and second.kwargs == recorded
        assert container.dead_letters.replay(container.producer, [first.id]) == 0
    finally:
        app.close()
        container.close()
