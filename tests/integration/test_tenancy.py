"""Conversation ids belong to their tenant in both tiers and on the fallback path, and a
message id is stored once per tenant and session whichever tier holds its conversation.

On real Redis (one of the test's own where it is stopped) and real PostgreSQL.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api import create_app
from config.settings import Settings
from conversation.adapters.postgres.schema import conversations, dead_letters, messages
from conversation.bootstrap import Container
from conversation.domain.errors import ForeignConversation, ForeignSession
from conversation.domain.messages import NewMessage, Role
from conversation.embedded import EmbeddedRedis
from conversation.services.migration import MigrationStatus
from conversation.services.ports import ActiveStoreUnavailable
from tests.workers import producer, running_worker, wait_until

pytestmark = pytest.mark.integration


def new_message(tenant: str, session: str, text: str, **extra: object) -> NewMessage:
    return NewMessage(tenant_id=tenant, session_id=session, agent_id="bot", role=Role.USER,
                      content=text, message_id=text, **extra)  # type: ignore[arg-type]


def migrate(container: Container, tenant: str, session: str):  # noqa: ANN201
    closed = container.active_store.close_session(tenant, session, "2026-11-24T12:00:00.000000Z")
    assert closed is not None
    return container.migrator.migrate(closed.conversation_id, closed.generation)


def read_full(container: Container, tenant: str, conversation_id: str):  # noqa: ANN201
    client = create_app(container=container).test_client()
    key = container.api_keys.create(tenant)
    return client.get(f"/api/conversations/{conversation_id}/full",
                      headers={"Authorization": f"Bearer {key}"})


def context_of(container: Container, tenant: str, conversation_id: str) -> list[str]:
    context = container.context_builder.get_context(
        tenant_id=tenant, conversation_id=conversation_id, window="8k")
    return [m["content"] for m in context["messages"]]


def test_naming_another_tenants_active_conversation_during_an_outage_mixes_nothing(
    settings: Settings, own_redis: EmbeddedRedis
) -> None:
    """Tenant B's conversation is active in Redis; Redis goes down; tenant A names B's id.
    A is refused (retried while Redis is down, then refused as another tenant's), B's
    conversation migrates whole, and each tenant reads only its own messages."""
    container = Container(replace(settings, redis_url=f"{own_redis.url}/0"))
    container.breaker.retry_after = 0.2
    suffix = settings.redis_key_prefix.strip(":")
    shared, tenant_a, tenant_b = f"shared-{suffix}", f"a-{suffix}", f"b-{suffix}"
    try:
        for text in ("b one", "b two"):
            outcome = container.saver.save(
                new_message(tenant_b, f"sb-{suffix}", text, conversation_id=shared))
            assert outcome.tier == "redis"

        own_redis.stop()
        # PostgreSQL cannot tell whether the id is live in the unreachable Redis: a transient
        # failure (the task retries), never a conversation made on a guess.
        with pytest.raises(ActiveStoreUnavailable):
            container.saver.save(
                new_message(tenant_a, f"sa-{suffix}", "a secret", conversation_id=shared))
        assert container.repository.get_conversation(shared) is None

        own_redis.start()  # same port, same data
        container.breaker._retry_at = 0  # noqa: SLF001  (do not wait for the retry window)
        # The task's retry, once Redis is back: refused as another tenant's.
        with pytest.raises(ForeignConversation):
            container.saver.save(
                new_message(tenant_a, f"sa-{suffix}", "a secret", conversation_id=shared))

        outcome = migrate(container, tenant_b, f"sb-{suffix}")
        assert outcome.status is MigrationStatus.MIGRATED and outcome.messages == 2

        b_full = read_full(container, tenant_b, shared)
        assert b_full.status_code == 200, b_full.json
        assert [m["content"] for m in b_full.json["messages"]] == ["b one", "b two"]
        assert read_full(container, tenant_a, shared).status_code == 404
        assert context_of(container, tenant_b, shared) == ["b one", "b two"]
        assert context_of(container, tenant_a, shared) == []
        with container.engine.connect() as connection:
            owner = connection.scalar(select(conversations.c.tenant_id).where(
                conversations.c.id == shared))
            a_rows = connection.scalar(select(func.count()).select_from(messages).where(
                messages.c.tenant_id == tenant_a))
        assert (owner, a_rows) == (tenant_b, 0)
    finally:
        container.close()


def test_a_migration_never_merges_into_another_tenants_row(container: Container) -> None:
    """A row another tenant holds under the same id (written by an older version's fallback)
    refuses the migration with a reason; nothing is copied into it, and reads filter by the
    owner's tenant."""
    suffix = container.settings.redis_key_prefix.strip(":")
    shared, tenant_a, tenant_b = f"legacy-{suffix}", f"la-{suffix}", f"lb-{suffix}"
    container.saver.save(new_message(tenant_b, f"lb-s-{suffix}", "b secret",
                                     conversation_id=shared))
    now = datetime.now(UTC)
    with container.engine.begin() as connection:
        connection.execute(conversations.insert().values(
            id=shared, tenant_id=tenant_a, session_id=f"la-s-{suffix}", agent_id="bot",
            status="active", created_at=now, message_count=1))
        connection.execute(messages.insert().values(
            conversation_id=shared, id="a own", seq=0, tenant_id=tenant_a, role="user",
            content="a own", tokens=3, encoding="cl100k_base", created_at=now))

    outcome = migrate(container, tenant_b, f"lb-s-{suffix}")

    assert outcome.status is MigrationStatus.QUARANTINED
    assert outcome.reason and "another tenant" in outcome.reason
    # B's conversation stays whole in Redis, readable by B alone.
    assert [m.content for m in container.active_store.messages(shared)] == ["b secret"]
    assert [m.content for m in container.repository.messages(shared)] == ["a own"]
    assert context_of(container, tenant_b, shared) == ["b secret"]
    with container.engine.connect() as connection:
        copied = connection.scalar(select(func.count()).select_from(messages).where(
            messages.c.conversation_id == shared, messages.c.tenant_id == tenant_b))
    assert copied == 0


def test_reads_skip_messages_of_another_tenant_under_a_persisted_id(container: Container) -> None:
    """Defence in depth: a message row of another tenant under a conversation's id (mixed by
    an older version) is returned by no read: /full, context, LangChain history, export,
    search (summaries read through repository.messages)."""
    from conversation.queries.export import export_records
    from conversation.langchain import ConversationChatHistory

    suffix = container.settings.redis_key_prefix.strip(":")
    shared, owner, other = f"mixed-{suffix}", f"mo-{suffix}", f"mx-{suffix}"
    now = datetime.now(UTC)
    with container.engine.begin() as connection:
        connection.execute(conversations.insert().values(
            id=shared, tenant_id=owner, session_id=f"mo-s-{suffix}", agent_id="bot",
            status="closed", created_at=now, message_count=2, migrated_at=now))
        for seq, (tenant, text) in enumerate(((owner, "mine"), (other, "not yours"))):
            connection.execute(messages.insert().values(
                conversation_id=shared, id=text, seq=seq, tenant_id=tenant, role="user",
                content=text, tokens=3, encoding="cl100k_base", created_at=now))

    full = read_full(container, owner, shared)
    assert [m["content"] for m in full.json["messages"]] == ["mine"]
    assert context_of(container, owner, shared) == ["mine"]
    history = ConversationChatHistory(container, tenant_id=owner, session_id=f"mo-s-{suffix}",
                                      agent_id="bot", conversation_id=shared)
    assert [m.content for m in history.messages] == ["mine"]
    exported = [r["content"] for r in export_records(container.engine, container.tiers,
                                                     owner)]
    assert exported == ["mine"]
    assert [m.content for m in container.repository.messages(shared)] == ["mine"]
    # Search: the other tenant's row is its message, but not in its conversation.
    client = create_app(container=container).test_client()
    for tenant in (owner, other):
        key = container.api_keys.create(tenant)
        found = client.get(f"/api/conversations/search/{tenant}?q=yours",
                           headers={"Authorization": f"Bearer {key}"})
        assert found.status_code == 200 and found.json["items"] == [], found.json


def test_a_save_redelivered_after_migration_is_stored_once(container: Container) -> None:
    suffix = container.settings.redis_key_prefix.strip(":")
    tenant, session = f"re-{suffix}", f"re-s-{suffix}"
    first = container.saver.save(new_message(tenant, session, "hello"))
    assert migrate(container, tenant, session).status is MigrationStatus.MIGRATED

    again = container.saver.save(new_message(tenant, session, "hello"))

    assert (again.conversation_id, again.stored) == (first.conversation_id, False)
    assert container.active_store.session_conversation(tenant, session) is None
    assert container.active_store.active_conversations(tenant) == []
    with container.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(messages).where(
            messages.c.tenant_id == tenant)) == 1
    # A new message on the session still starts a new conversation.
    new = container.saver.save(new_message(tenant, session, "new day"))
    assert new.stored and new.tier == "redis" and new.conversation_id != first.conversation_id


def test_a_save_redelivered_after_migration_during_an_outage_is_stored_once(
    settings: Settings, own_redis: EmbeddedRedis
) -> None:
    container = Container(replace(settings, redis_url=f"{own_redis.url}/0"))
    container.breaker.retry_after = 0.2
    suffix = settings.redis_key_prefix.strip(":")
    tenant, session = f"ro-{suffix}", f"ro-s-{suffix}"
    try:
        first = container.saver.save(new_message(tenant, session, "hello"))
        assert migrate(container, tenant, session).status is MigrationStatus.MIGRATED
        own_redis.stop()
        again = container.saver.save(new_message(tenant, session, "hello"))
        assert (again.conversation_id, again.stored, again.tier) == (
            first.conversation_id, False, "postgres")
        with container.engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(conversations).where(
                conversations.c.tenant_id == tenant)) == 1
    finally:
        container.close()


def test_the_collision_through_a_real_worker_and_the_api(
    settings: Settings, own_redis: EmbeddedRedis, test_var_dir: Path
) -> None:
    """The issue's scenario as producers drive it: B's conversation active in Redis, Redis
    stopped, A's save naming B's id retried by the worker, Redis back, A's save dead-lettered
    as another tenant's; B's session closes and its conversation migrates whole; each tenant
    reads only its own messages through the API and the context service. Then B's second
    save is delivered again after the migration: stored once, no new conversation."""
    settings = replace(settings, redis_url=f"{own_redis.url}/0")
    container = Container(settings)
    app = producer(settings)
    suffix = settings.redis_key_prefix.strip(":")
    shared, tenant_a, tenant_b = f"wshared-{suffix}", f"wa-{suffix}", f"wb-{suffix}"
    log_path = test_var_dir / f"w-tenancy-{suffix}.log"

    def send(tenant: str, session: str, text: str, *, explicit: bool = True) -> None:
        app.send_task("conversation.save_message", queue="conversation.save", kwargs={
            "tenant_id": tenant, "session_id": session, "agent_id": "bot", "role": "user",
            "content": text, "message_id": text.replace(" ", "-"),
            **({"conversation_id": shared} if explicit else {})})

    def letters_of(tenant: str) -> list[str]:
        with container.engine.connect() as connection:
            return list(connection.scalars(select(dead_letters.c.error).where(
                dead_letters.c.kwargs["tenant_id"].astext == tenant)))

    try:
        with running_worker(settings, log_path, concurrency=1):
            send(tenant_b, f"wsb-{suffix}", "b one")
            wait_until(lambda: container.active_store.messages(shared), what="B's conversation")
            send(tenant_b, f"wsb-{suffix}", "b two", explicit=False)  # the session's
            wait_until(lambda: len(container.active_store.messages(shared)) == 2,
                       what="B's messages in Redis")

            own_redis.stop()
            send(tenant_a, f"wsa-{suffix}", "a secret")
            wait_until(lambda: "retry: Retry in" in log_path.read_text(), timeout=30,
                       what="the worker retrying A's save while Redis is down")
            assert container.repository.get_conversation(shared) is None
            own_redis.start()

            errors = wait_until(lambda: letters_of(tenant_a), timeout=60,
                                what="A's save dead-lettered")
            assert "ForeignConversation" in errors[0]
            app.send_task("conversation.session_closed", queue="conversation.sessions",
                          kwargs={"tenant_id": tenant_b, "session_id": f"wsb-{suffix}"})
            wait_until(lambda: container.repository.get_conversation(shared), timeout=60,
                       what="B's conversation migrated")

            # Delivered again after the migration, naming only its session.
            send(tenant_b, f"wsb-{suffix}", "b two", explicit=False)
            app.send_task("conversation.save_message", queue="conversation.save", kwargs={
                "tenant_id": tenant_b, "session_id": f"wsb-marker-{suffix}", "agent_id": "bot",
                "role": "user", "content": "marker", "message_id": "marker"})
            # One worker process: the redelivered save ran before the marker.
            wait_until(lambda: container.active_store.session_conversation(
                tenant_b, f"wsb-marker-{suffix}"), timeout=30, what="the marker saved")

        b_full = read_full(container, tenant_b, shared)
        assert [m["content"] for m in b_full.json["messages"]] == ["b one", "b two"]
        assert b_full.json["tier"] == "postgres"
        assert read_full(container, tenant_a, shared).status_code == 404
        assert context_of(container, tenant_b, shared) == ["b one", "b two"]
        assert context_of(container, tenant_a, shared) == []
        assert container.active_store.session_conversation(tenant_b, f"wsb-{suffix}") is None
        with container.engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(messages).where(
                messages.c.tenant_id.in_([tenant_a, tenant_b]),
                messages.c.id != "marker")) == 2
    finally:
        app.close()
        container.close()


def test_naming_another_tenants_live_session_during_an_outage_is_refused(
    settings: Settings, own_redis: EmbeddedRedis
) -> None:
    """Tenant B's session is live only in Redis; Redis goes down; tenant A's message names B's
    session. A is refused (the session's durable owner is B), B's own direct saves go on, and
    after the outage B's session is still B's in both tiers."""
    container = Container(replace(settings, redis_url=f"{own_redis.url}/0"))
    container.breaker.retry_after = 0.2
    suffix = settings.redis_key_prefix.strip(":")
    session, tenant_a, tenant_b = f"live-{suffix}", f"oa-{suffix}", f"ob-{suffix}"
    try:
        assert container.saver.save(new_message(tenant_b, session, "b one")).tier == "redis"
        own_redis.stop()
        with pytest.raises(ForeignSession):
            container.saver.save(new_message(tenant_a, session, "a intrudes"))
        outcome = container.saver.save(new_message(tenant_b, session, "b two"))
        assert (outcome.tier, outcome.stored) == ("postgres", True)
        with container.engine.connect() as connection:
            owners = set(connection.scalars(select(conversations.c.tenant_id).where(
                conversations.c.session_id == session)))
        assert owners == {tenant_b}
    finally:
        container.close()


@pytest.mark.parametrize("explicit", [False, True])
def test_a_migrated_session_stays_its_tenants_once_redis_forgets_it(
    container: Container, explicit: bool
) -> None:
    """B's session migrated and its Redis records expired: tenant A naming the session (with
    or without a conversation id of its own) is refused, and B can still use it."""
    suffix = container.settings.redis_key_prefix.strip(":")
    tag = f"{suffix}-{int(explicit)}"
    session, tenant_a, tenant_b = f"gone-{tag}", f"ga-{tag}", f"gb-{tag}"
    container.saver.save(new_message(tenant_b, session, "b one"))
    assert migrate(container, tenant_b, session).status is MigrationStatus.MIGRATED
    keys = container.active_store.keys
    container.redis.delete(keys.session_mapping(session), keys.session_state(session))

    extra = {"conversation_id": f"ga-conv-{tag}"} if explicit else {}
    with pytest.raises(ForeignSession):
        container.saver.save(new_message(tenant_a, session, "a claims", **extra))
    assert container.saver.save(new_message(tenant_b, session, "b back")).stored


def test_a_replay_of_migrate_quarantined_for_a_live_conversation_does_nothing(
    container: Container,
) -> None:
    """Any producer may send conversation.migrate_quarantined: naming a live conversation that
    is not quarantined (another tenant's, or its own) must not force it out of Redis."""
    suffix = container.settings.redis_key_prefix.strip(":")
    outcome = container.saver.save(new_message(f"q-{suffix}", f"q-s-{suffix}", "live"))
    conversation_id = outcome.conversation_id

    retried = container.due_migrations.retry_quarantined(conversation_id)

    assert retried.status.value == "not_quarantined"
    assert container.repository.get_conversation(conversation_id) is None
    assert [m.content for m in container.active_store.messages(conversation_id)] == ["live"]


def test_get_context_on_another_tenants_conversation_answers_as_for_none(
    container: Container,
) -> None:
    """Tenant A asking for B's conversation (active, then migrated) gets the answer an id that
    does not exist gets: nothing tells A the id is in use."""
    suffix = container.settings.redis_key_prefix.strip(":")
    tenant_a, tenant_b, session = f"ca-{suffix}", f"cb-{suffix}", f"cb-s-{suffix}"
    shared = container.saver.save(new_message(tenant_b, session, "b secret")).conversation_id
    missing = f"missing-{suffix}"

    def answer(conversation_id: str) -> dict[str, object]:
        context = container.context_builder.get_context(
            tenant_id=tenant_a, conversation_id=conversation_id, window="8k")
        return {**context, "conversation_id": None,
                "error": str(context["error"]).replace(conversation_id, "ID")}

    assert answer(shared) == answer(missing)
    assert migrate(container, tenant_b, session).status is MigrationStatus.MIGRATED
    assert answer(shared) == answer(missing)
