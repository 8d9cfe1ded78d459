"""DATABASE_REPLICA_URL: statistics and list reads go to the replica, writes never do.

The "replica" is a second database on the same server, fed by hand with what replication would
copy: what the API shows follows the replica, what the service writes lands on the primary.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from sqlalchemy import func, insert, select

from api import create_app
from config.settings import Settings
from conversation.adapters.postgres.schema import conversations, messages, stats_active, stats_daily
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role
from conversation.services.migration import ConversationMigrator
from tests.conftest import migrated_database

pytestmark = pytest.mark.integration


@pytest.fixture
def replicated(settings: Settings, postgres_server: str) -> Iterator[Container]:
    with migrated_database(postgres_server, "replica") as replica_url:
        container = Container(dataclasses.replace(settings, database_replica_url=replica_url))
        yield container
        container.close()


def count(engine, table, tenant: str) -> int:  # noqa: ANN001
    with engine.connect() as connection:
        return int(connection.scalar(
            select(func.count()).select_from(table).where(table.c.tenant_id == tenant)))


def test_reads_use_the_replica_and_writes_the_primary(replicated: Container) -> None:
    container = replicated
    tenant = f"rep-{container.settings.redis_key_prefix.strip(':')}"
    conversation_id = container.saver.save(NewMessage(
        tenant_id=tenant, session_id=f"{tenant}-s1", agent_id="bot", role=Role.USER, content="hello", message_id="m1",
        created_at="2026-11-20T10:00:00Z")).conversation_id
    closed = container.active_store.close_session(tenant, f"{tenant}-s1", "2026-11-20T10:05:00Z")
    assert closed is not None
    ConversationMigrator(container.active_store, container.repository).migrate(
        closed.conversation_id, closed.generation)
    container.statistics.aggregate()

    primary, replica = container.engine, container.replica_engine
    assert primary.url != replica.url
    for table in (conversations, messages, stats_daily):
        assert count(primary, table, tenant) > 0, table.name
        assert count(replica, table, tenant) == 0, table.name  # nothing written there

    client = create_app(container=container).test_client()
    headers = {"Authorization": f"Bearer {container.api_keys.create(tenant)}"}
    listed = client.get(f"/api/conversations/list/{tenant}", headers=headers).json
    stats = client.get(f"/api/conversations/stats/{tenant}", headers=headers).json
    assert listed["items"] == [] and stats["totals"]["conversations"] == 0  # not replicated yet
    # The full conversation reads the primary: a CRM opens what it was just told exists.
    full = client.get(f"/api/conversations/{conversation_id}/full", headers=headers).json
    assert [m["content"] for m in full["messages"]] == ["hello"]

    # Replication catches up: the same rows appear on the replica, and so in the API.
    with primary.connect() as source, replica.begin() as target:
        for table in (conversations, messages, stats_daily, stats_active):
            rows = [dict(r._mapping) for r in source.execute(
                select(table).where(table.c.tenant_id == tenant))]
            if rows:
                target.execute(insert(table), rows)
    listed = client.get(f"/api/conversations/list/{tenant}", headers=headers).json
    assert [item["id"] for item in listed["items"]] == [conversation_id]
    # Statistics answers are cached per rollup generation: the next aggregation run (every
    # minute) starts a new one, and the answer follows the replica.
    container.statistics.aggregate()
    stats = client.get(f"/api/conversations/stats/{tenant}", headers=headers).json
    assert stats["totals"]["conversations"] == 1 and stats["totals"]["closed"] == 1


def test_without_a_replica_reads_share_the_primary_pool(settings: Settings) -> None:
    container = Container(dataclasses.replace(settings, database_replica_url=None))
    try:
        assert container.replica_engine is container.engine  # one pool, not two
    finally:
        container.close()
