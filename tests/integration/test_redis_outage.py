"""Redis down: saves go to PostgreSQL, reads come from it, nothing is lost when Redis returns,
and the conversation is whole again once migrated. Degraded mode is logged once."""
from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from sqlalchemy import text

from api import create_app
from config.settings import Settings
from conversation.bootstrap import Container
from conversation.domain.messages import Conversation, NewMessage, Role
from conversation.embedded import EmbeddedRedis
from conversation.services.migration import ConversationMigrator, MigrationStatus

pytestmark = pytest.mark.integration


def say(container: Container, text: str, at: str, **extra: object):  # noqa: ANN201
    return container.saver.save(NewMessage(
        tenant_id="acme", session_id="out-1", agent_id="bot",
        role=Role.USER if text.startswith("q") else Role.ASSISTANT, content=text,
        message_id=text, created_at=at, **extra))  # type: ignore[arg-type]


def test_an_outage_loses_nothing_and_splits_nothing(
    settings: Settings, own_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    container = Container(replace(settings, redis_url=f"{own_redis.url}/0"))
    container.breaker.retry_after = 0.2
    try:
        before = say(container, "q1", "2026-11-24T10:00:01Z")
        say(container, "a1", "2026-11-24T10:00:02Z")
        assert before.tier == "redis"

        own_redis.stop()
        with caplog.at_level(logging.WARNING, logger="conversation.degraded"):
            during = [say(container, text, f"2026-11-24T10:00:0{i}Z")
                      for i, text in ((3, "q2"), (4, "a2"))]
            again = say(container, "a2", "2026-11-24T10:00:04Z")
        assert [o.tier for o in during] == ["postgres", "postgres"]
        assert during[0].conversation_id == during[1].conversation_id
        assert (again.conversation_id, again.tier) == (during[1].conversation_id, "postgres")
        assert again.stored is False  # idempotent in PostgreSQL too
        entered = [r for r in caplog.records if "degraded mode" in r.getMessage()]
        assert len(entered) == 1, "degraded mode is logged once, not per message"

        context = container.context_builder.get_context(
            tenant_id="acme", session_id="out-1", window="8k")
        assert [m["content"] for m in context["messages"]] == ["q2", "a2"]
        client = create_app(container=container).test_client()
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json["status"] == "degraded"
        assert "conversation_degraded 1.0" in client.get("/metrics").get_data(as_text=True)
        key = container.api_keys.create("acme")
        full = client.get(f"/api/conversations/{during[0].conversation_id}/full",
                          headers={"Authorization": f"Bearer {key}"})
        assert [m["content"] for m in full.json["messages"]] == ["q2", "a2"]

        own_redis.start()  # same port, same data: the AOF brings q1 and a1 back
        container.breaker._retry_at = 0  # noqa: SLF001  (do not wait for the retry window)
        after = say(container, "q3", "2026-11-24T10:00:05Z")
        assert after.tier == "redis" and after.conversation_id == before.conversation_id
        assert "conversation_degraded 0.0" in client.get("/metrics").get_data(as_text=True)

        # The outage's messages got their search vectors meanwhile: absorbing them must
        # carry the vectors along (their key changes conversation).
        assert container.search_indexer.index_pending() is not None
        closed = container.active_store.close_session("acme", "out-1",
                                                      "2026-11-24T10:01:00.000000Z")
        container.sessions.repository.close_active("acme", "out-1", "2026-11-24T10:01:00.000000Z")
        outcome = ConversationMigrator(container.active_store, container.repository).migrate(
            closed.conversation_id, closed.generation)
        assert outcome.status is MigrationStatus.MIGRATED
        whole = container.repository.messages(before.conversation_id)
        assert [m.content for m in whole] == ["q1", "a1", "q2", "a2", "q3"]
        # The outage's conversation was absorbed: no second conversation for the session.
        assert container.repository.get_conversation(during[0].conversation_id) is None
        with container.engine.connect() as connection:
            vectors = connection.execute(text(
                "SELECT conversation_id, count(*) FROM message_search "
                "WHERE conversation_id = ANY(:ids) GROUP BY 1"),
                {"ids": [before.conversation_id, during[0].conversation_id]}).all()
        assert vectors == [(before.conversation_id, 2)]  # q2 and a2, moved with their messages
    finally:
        container.close()


def test_the_api_during_an_outage_answers_503_where_it_cannot_tell_and_reads_what_it_can(
    settings: Settings, own_redis: EmbeddedRedis
) -> None:
    """Redis down: erasure (of a conversation, of a tenant) answers 503 JSON with Retry-After,
    never a 500, and erases nothing; `/full` of a conversation PostgreSQL lacks answers 503 (it
    may be live in Redis), not 404; lists, search and stats read PostgreSQL and answer 200."""
    container = Container(replace(settings, redis_url=f"{own_redis.url}/0"))
    container.breaker.retry_after = 0.2
    suffix = settings.redis_key_prefix.strip(":")
    tenant = f"down-{suffix}"
    try:
        live = container.saver.save(NewMessage(
            tenant_id=tenant, session_id=f"down-s-{suffix}", agent_id="bot", role=Role.USER,
            content="live", message_id="live")).conversation_id
        client = create_app(container=container).test_client()
        admin = {"Authorization": f"Bearer {container.api_keys.create(None, admin=True)}"}
        own = {"Authorization": f"Bearer {container.api_keys.create(tenant)}"}
        own_redis.stop()

        for response in (client.delete(f"/api/admin/conversations/{live}", headers=admin),
                         client.delete(f"/api/admin/tenants/{tenant}", headers=admin),
                         client.get(f"/api/conversations/{live}/full", headers=own)):
            assert response.status_code == 503, response.get_data(as_text=True)
            assert response.json["error"]["code"] == "unavailable"
            assert int(response.headers["Retry-After"]) >= 1
        for path in (f"/api/conversations/list/{tenant}", f"/api/conversations/search/{tenant}?q=x",
                     f"/api/conversations/stats/{tenant}"):
            response = client.get(path, headers=own)
            assert response.status_code == 200, (path, response.get_data(as_text=True))

        own_redis.start()
        container.breaker._retry_at = 0  # noqa: SLF001  (do not wait for the retry window)
        assert [m.content for m in container.active_store.messages(live)] == ["live"]
        assert client.get(f"/api/conversations/{live}/full", headers=own).status_code == 200
    finally:
        container.close()


def test_a_session_begun_in_postgresql_is_one_conversation_once_migrated(
    container: Container,
) -> None:
    """Two workers take a new session's first messages: one writes its conversation in Redis,
    the other's write fails there (Redis stopped, or refused it, between the session's claim
    and the write) and starts the session in PostgreSQL with the earlier message. Migrated,
    the session is one conversation, in order (under `conversation run` it came out as two)."""
    session = f"race-{container.settings.redis_key_prefix.strip(':')}"

    def new(text: str, at: str) -> NewMessage:
        return NewMessage(tenant_id="acme", session_id=session, agent_id="bot",
                          role=Role.USER, content=text, message_id=text, created_at=at)

    first = container.saver.build_message(new("m1", "2026-11-24T10:00:01Z"))
    direct_id, _ = container.repository.save_direct(
        Conversation(id="direct-" + session, tenant_id="acme", session_id=session,
                     agent_id="bot", created_at=first.created_at), first, False)
    later = container.saver.save(new("m6", "2026-11-24T10:00:06Z"))
    assert later.tier == "redis" and later.conversation_id != direct_id

    closed = container.sessions.close("acme", session, "2026-11-24T10:01:00Z")
    outcome = container.migrator.migrate(closed.conversation_id, closed.generation)

    assert outcome.status is MigrationStatus.MIGRATED
    assert [m.content for m in container.repository.messages(later.conversation_id)] == [
        "m1", "m6"]
    assert container.repository.get_conversation(direct_id) is None
