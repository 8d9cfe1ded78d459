"""A conversation PostgreSQL refuses is set aside (quarantined) with its reason; every other
conversation of its batch, and every later cleanup run, goes on."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, multiprocess
from sqlalchemy import func, select

from config.settings import Settings
from conversation.adapters.redis import RedisKeys
from conversation.adapters.postgres.schema import conversations, dead_letters
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role
from conversation.services.migration import ConversationMigrator
from tests.workers import metrics_dir, producer, running_worker, wait_until

pytestmark = pytest.mark.e2e

CONVERSATIONS = 50


def save(container: Container, tenant: str, session: str, text: str,
         at: str | None = None) -> str:
    return container.saver.save(NewMessage(
        tenant_id=tenant, session_id=session, agent_id="bot", role=Role.USER, content=text,
        message_id=f"{session}-{text}", created_at=at)).conversation_id


def poison(container: Container, conversation_id: str,
           metadata: dict[str, str] | None = None) -> None:
    """Bad data already in Redis: a NUL in a message's metadata, which Redis keeps and
    PostgreSQL's jsonb refuses (written past the save path, whatever it refuses)."""
    key = RedisKeys(container.settings.redis_key_prefix).messages(conversation_id)
    stored = orjson.loads(container.redis.lindex(key, 0))
    stored["metadata"] = metadata or {"note": "nul \u0000 inside"}
    container.redis.lset(key, 0, orjson.dumps(stored))


def persisted(container: Container, tenant: str) -> set[str]:
    with container.engine.connect() as connection:
        return set(connection.scalars(
            select(conversations.c.id).where(conversations.c.tenant_id == tenant)))


def quarantine_letters(container: Container, conversation_id: str) -> list:
    with container.engine.connect() as connection:
        return connection.execute(select(dead_letters).where(
            dead_letters.c.kwargs["conversation_id"].astext == conversation_id,
            dead_letters.c.error.startswith("quarantined"),
        )).all()


def quarantined_metric(settings: Settings) -> float:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir(settings)))
    return registry.get_sample_value("conversation_quarantined_total") or 0.0


def test_a_poison_conversation_is_quarantined_and_the_others_move_on(
    settings: Settings, test_var_dir: Path
) -> None:
    container = Container(settings)
    app = producer(settings)
    tenant = f"poison-{settings.redis_key_prefix.strip(':')}"
    ids = [save(container, tenant, f"s{i}", "hello") for i in range(CONVERSATIONS)]
    for i in range(CONVERSATIONS):
        save(container, tenant, f"s{i}", "again")
    bad = ids[17]
    poison(container, bad)
    try:
        with running_worker(settings, test_var_dir / "w-quarantine.log", concurrency=2):
            for i in range(CONVERSATIONS):
                app.send_task("conversation.session_closed",
                              kwargs={"tenant_id": tenant, "session_id": f"s{i}"},
                              queue="conversation.sessions")
            wait_until(lambda: len(persisted(container, tenant)) == CONVERSATIONS - 1,
                       timeout=30, what="the 49 good conversations in PostgreSQL")
            letters = wait_until(lambda: quarantine_letters(container, bad), timeout=30,
                                 what="the poison's quarantine record")
            assert persisted(container, tenant) == set(ids) - {bad}
            assert len(letters) == 1
            letter = letters[0]
            assert letter.task_name == "conversation.migrate_quarantined"
            assert "\\u0000" in letter.error or "0x00" in letter.error or "NUL" in letter.error
            assert letter.kwargs == {"conversation_id": bad}
            listed = container.dead_letters.list()  # what `conversation dlq list` prints
            assert [r["id"] for r in listed if r["kwargs"] == {"conversation_id": bad}] == [
                letter.id]
            # Kept in Redis, whole: nothing of it is lost.
            assert [m.content for m in container.active_store.messages(bad)] == ["hello",
                                                                                 "again"]
            assert quarantined_metric(settings) >= 1

            # Later: a close whose timer was lost, an expired conversation, and the cleanup
            # beat job. It migrates the one, erases the other, and does not retry the poison.
            now = datetime.now(UTC)
            lost = save(container, tenant, "lost-timer", "late")
            container.active_store.close_session(
                tenant, "lost-timer", (now - timedelta(seconds=30)).isoformat())
            old = save(container, tenant, "old", "ancient",
                       (now - timedelta(days=40)).isoformat())
            closed = container.active_store.close_session(tenant, "old", now.isoformat())
            ConversationMigrator(container.active_store, container.repository).migrate(
                closed.conversation_id, closed.generation)
            container.repository.set_retention(tenant, 30)
            assert old in persisted(container, tenant)
            app.send_task("conversation.cleanup", kwargs={}, queue="conversation.stats")
            wait_until(lambda: lost in persisted(container, tenant)
                       and old not in persisted(container, tenant),
                       timeout=30, what="cleanup's sweep and retention")
            assert len(quarantine_letters(container, bad)) == 1, "not retried by every sweep"
            assert len(container.active_store.messages(bad)) == 2

            # An operator fixes the data and replays the record: the migration runs again.
            poison(container, bad, metadata={"note": "fixed"})
            assert container.dead_letters.replay(container.producer, [letter.id]) == 1
            wait_until(lambda: bad in persisted(container, tenant), timeout=30,
                       what="the replayed quarantined conversation in PostgreSQL")
        assert [m.metadata for m in container.repository.messages(bad)] == [
            {"note": "fixed"}, {}]
        assert container.active_store.get_conversation(bad) is None
        assert container.active_store.quarantined([bad]) == [False]
        with container.engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(dead_letters).where(
                dead_letters.c.kwargs["tenant_id"].astext == tenant)) == 0
    finally:
        container.repository.set_retention(tenant, None)
        app.close()
        container.close()
