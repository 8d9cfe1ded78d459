"""Erasure and retention on real Redis and PostgreSQL: nothing is left behind in either tier."""
from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from kombu import Connection
from sqlalchemy import func, select

from api import create_app
from config.celery import STATS_QUEUE
from conversation.adapters.postgres.schema import (
    conversation_stats,
    conversations,
    dead_letters,
    message_token_counts,
    messages,
    session_owners,
    stats_active,
    stats_changes,
    stats_daily,
)
from conversation.adapters.dead_letters import DeadLetter
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role
from conversation.services.migration import ConversationMigrator
from conversation.services.ports import Summary

pytestmark = pytest.mark.integration


def save(container: Container, tenant: str, session: str, text: str, at: str | None = None) -> str:
    return container.saver.save(NewMessage(
        tenant_id=tenant, session_id=session, agent_id="bot", role=Role.USER, content=text,
        message_id=text, created_at=at)).conversation_id


def migrate(container: Container, tenant: str, session: str) -> None:
    closed = container.active_store.close_session(tenant, session, "2026-11-24T12:00:00.000000Z")
    ConversationMigrator(container.active_store, container.repository).migrate(
        closed.conversation_id, closed.generation)


def redis_traces(container: Container, *needles: str) -> list[str]:
    """Every key of this test's prefix, or member of its sets, that mentions a needle."""
    prefix = container.settings.redis_key_prefix
    found = []
    for key in container.redis.scan_iter(match=f"{prefix}*"):
        name = key.decode()
        kind = container.redis.type(key).decode()
        members: list[bytes] = []
        if kind == "set":
            members = list(container.redis.smembers(key))
        elif kind == "zset":
            members = container.redis.zrange(key, 0, -1)
        texts = [name, *(m.decode() for m in members)]
        found += [t for t in texts if any(n in t for n in needles)]
    return found


def rows(container: Container, table, column, value) -> int:  # noqa: ANN001
    with container.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(table).where(column == value))


def test_erasing_a_conversation_leaves_nothing_in_either_tier(container) -> None:
    tenant = f"erase-{container.settings.redis_key_prefix.strip(':')}"
    persisted = save(container, tenant, "s-old", "old secret")
    migrate(container, tenant, "s-old")
    active = save(container, tenant, "s-new", "new secret")
    container.active_store.save_summary(active, Summary("a summary of secrets", "x|y"))
    # Costs counted in another encoding, in each tier.
    container.repository.store_token_counts(persisted, "o200k_base", {"old secret": 7})
    container.active_store.owned_history(active)[1].store_counts("o200k_base", {"new secret": 5})
    assert rows(container, message_token_counts, message_token_counts.c.conversation_id,
                persisted) == 1
    kept = save(container, tenant, "s-kept", "unrelated")

    for conversation_id in (persisted, active):
        assert container.eraser.erase_conversation(conversation_id) is True
        assert container.eraser.erase_conversation(conversation_id) is False
    assert redis_traces(container, persisted, active, "s-new") == []
    for conversation_id in (persisted, active):
        assert rows(container, conversations, conversations.c.id, conversation_id) == 0
        assert rows(container, messages, messages.c.conversation_id, conversation_id) == 0
        assert rows(container, conversation_stats, conversation_stats.c.conversation_id,
                    conversation_id) == 0
        assert rows(container, message_token_counts, message_token_counts.c.conversation_id,
                    conversation_id) == 0
    assert [m.content for m in container.active_store.messages(kept)] == ["unrelated"]


def test_erasing_a_tenant_through_the_admin_api(container) -> None:
    tenant = f"gone-{container.settings.redis_key_prefix.strip(':')}"
    other = f"stays-{container.settings.redis_key_prefix.strip(':')}"
    ids = [save(container, tenant, f"{tenant}-s{i}", f"secret {i}") for i in range(3)]
    migrate(container, tenant, f"{tenant}-s0")
    container.statistics.aggregate()
    assert rows(container, stats_daily, stats_daily.c.tenant_id, tenant) > 0
    assert rows(container, stats_active, stats_active.c.tenant_id, tenant) > 0
    survivor = save(container, other, f"{other}-s", "mine")
    with container.engine.begin() as connection:
        connection.execute(dead_letters.insert().values(
            task_name="conversation.save_message", queue="conversation.save",
            kwargs={"tenant_id": tenant, "content": "secret"}, error="x",
            created_at=datetime.now(UTC)))
    client = create_app(container=container).test_client()
    tenant_key = container.api_keys.create(tenant)
    refused = client.delete(f"/api/admin/tenants/{tenant}",
                            headers={"Authorization": f"Bearer {tenant_key}"})
    assert refused.status_code == 403
    admin = container.api_keys.create(None, admin=True)
    response = client.delete(f"/api/admin/tenants/{tenant}",
                             headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200
    assert response.json["conversations"] == 3 and response.json["dead_letters"] == 1
    assert redis_traces(container, tenant, *ids) == []
    assert rows(container, conversations, conversations.c.tenant_id, tenant) == 0
    assert rows(container, messages, messages.c.tenant_id, tenant) == 0
    for derived in (stats_daily, stats_active, stats_changes):
        assert rows(container, derived, derived.c.tenant_id, tenant) == 0
    with container.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(dead_letters).where(
            dead_letters.c.kwargs["tenant_id"].astext == tenant)) == 0
    assert [m.content for m in container.active_store.messages(survivor)] == ["mine"]
    # Its session ids are free again (nothing of it left to guard); the other's stay owned.
    assert rows(container, session_owners, session_owners.c.tenant_id, tenant) == 0
    assert rows(container, session_owners, session_owners.c.tenant_id, other) == 1
    save(container, other, f"{tenant}-s0", "reused")  # not refused as the erased tenant's


def test_retention_erases_only_what_expired(container) -> None:
    tenant = f"ret-{container.settings.redis_key_prefix.strip(':')}"
    now = datetime.now(UTC)
    old = save(container, tenant, "r-old", "old", (now - timedelta(days=40)).isoformat())
    migrate(container, tenant, "r-old")
    recent = save(container, tenant, "r-new", "recent", (now - timedelta(days=2)).isoformat())
    migrate(container, tenant, "r-new")
    container.repository.set_retention(tenant, 30)
    try:
        assert container.eraser.purge_expired(now) == 1
        assert container.repository.get_conversation(old) is None
        assert container.repository.get_conversation(recent) is not None
    finally:
        container.repository.set_retention(tenant, None)


def dead_letter(container: Container, kwargs: dict, task: str = "conversation.save_message") -> None:
    """Through the dead-letter office: a row, and a copy on the conversation.dlq queue."""
    container.dead_letters.send(DeadLetter(task_name=task, kwargs=kwargs, error="x",
                                           queue="conversation.save"))


def queued_payloads(container: Container) -> list[str]:
    """The task payloads on the broker's conversation.dlq queue (a Redis list here)."""
    with Connection(container.settings.broker_url) as connection:
        raw = connection.default_channel.client.lrange("conversation.dlq", 0, -1)
    return [str(json.loads(base64.b64decode(json.loads(r)["body"]))["kwargs"]) for r in raw]


def run_erasure_tasks(container: Container) -> list[int]:
    """What a stats worker does: take the `conversation.erase_queued_letters` tasks erasure
    published on the broker and run their pass (tasks/erasure_tasks.py); what each changed."""
    changed = []
    with Connection(container.settings.broker_url) as connection:
        client = connection.default_channel.client
        while raw := client.rpop(STATS_QUEUE):
            message = json.loads(raw)
            assert message["headers"]["task"] == "conversation.erase_queued_letters"
            _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            changed.append(container.eraser.erase_queued_now(
                [(t[0], t[1], t[2]) for t in kwargs["targets"]]))
    return changed


def letters_mentioning(container: Container, *needles: str) -> list[str]:
    """The dead letters' payloads (as text) that mention any needle, in the table and then
    on the queue."""
    with container.engine.connect() as connection:
        payloads = [str(k) for k in connection.scalars(select(dead_letters.c.kwargs))]
    payloads += queued_payloads(container)
    return [p for p in payloads if any(n in p for n in needles)]


def test_erasing_a_conversation_erases_its_dead_letters(container) -> None:
    suffix = container.settings.redis_key_prefix.strip(":")
    tenant, other = f"dl-{suffix}", f"dlo-{suffix}"
    erased = save(container, tenant, f"dl-s-{suffix}", f"chat {suffix}")
    kept = save(container, tenant, f"dl-k-{suffix}", f"unrelated {suffix}")
    mine = {"tenant_id": tenant, "session_id": f"dl-s-{suffix}", "agent_id": "bot",
            "role": "user"}
    dead_letter(container, {**mine, "conversation_id": erased, "content": f"secret 1 {suffix}"})
    dead_letter(container, {**mine, "content": f"secret 2 {suffix}"})  # its session's
    dead_letter(container, {"messages": [
        {**mine, "conversation_id": erased, "content": f"secret 3 {suffix}"},
        {**mine, "session_id": f"dl-k-{suffix}", "content": f"stays 1 {suffix}"}]},
        task="conversation.save_messages")
    dead_letter(container, {"conversation_id": erased, "generation": 1},
                task="conversation.migrate_conversation")
    # Another tenant naming the id (refused as another tenant's): its own data, it stays.
    dead_letter(container, {**mine, "tenant_id": other, "conversation_id": erased,
                            "content": f"stays 2 {suffix}"})
    dead_letter(container, {"_truncated": True, "bytes": 300_000, "preview":
                            f'{{"messages": [{{"conversation_id": "{erased}", "content": "secret 4'})

    assert container.eraser.erase_conversation(erased) is True
    # The queue's copies are not touched by the erasure itself (an admin request): a task
    # on the stats queue does that pass.
    assert len(letters_mentioning(container, f"secret 1 {suffix}")) == 1
    assert run_erasure_tasks(container) == [5]  # 4 dropped, 1 batch edited
    assert run_erasure_tasks(container) == []

    left = letters_mentioning(container, erased, f"secret 2 {suffix}")
    assert len(left) == 2 and all(f"stays 2 {suffix}" in letter for letter in left)
    batch = letters_mentioning(container, f"stays 1 {suffix}")
    assert len(batch) == 2 and all("secret" not in letter for letter in batch)
    assert [m.content for m in container.active_store.messages(kept)] == [f"unrelated {suffix}"]


def test_erasing_a_tenant_erases_its_batch_items_and_revokes_its_keys(container) -> None:
    suffix = container.settings.redis_key_prefix.strip(":")
    tenant, other = f"gk-{suffix}", f"gko-{suffix}"
    save(container, tenant, f"gk-s-{suffix}", "anything")
    item = {"session_id": "s", "agent_id": "bot", "role": "user"}
    dead_letter(container, {"messages": [
        {**item, "tenant_id": other, "content": f"theirs {suffix}"},
        {**item, "tenant_id": tenant, "content": f"erased {suffix}"}]},
        task="conversation.save_messages")
    dead_letter(container, {"sessions": [{"tenant_id": tenant, "session_id": "s"}]},
                task="conversation.sessions_closed")
    client = create_app(container=container).test_client()
    key = container.api_keys.create(tenant)
    assert client.get(f"/api/conversations/list/{tenant}",
                      headers={"Authorization": f"Bearer {key}"}).status_code == 200

    report = container.eraser.erase_tenant(tenant)
    run_erasure_tasks(container)

    assert report.api_keys == 1 and report.dead_letters == 2
    assert client.get(f"/api/conversations/list/{tenant}",
                      headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert letters_mentioning(container, f"erased {suffix}", tenant) == []
    assert len(letters_mentioning(container, f"theirs {suffix}")) == 2  # table and queue


def test_erasing_a_tenant_erases_dead_letters_kept_out_of_line(container) -> None:
    """A batch past 256 KB is kept whole in the compressed `payload` column (what replay
    sends): erasure cannot edit it item by item, so the letter goes whole."""
    suffix = container.settings.redis_key_prefix.strip(":")
    tenant, other = f"ol-{suffix}", f"olo-{suffix}"
    item = {"session_id": "s", "agent_id": "bot", "role": "user"}
    dead_letter(container, {"messages": [
        {**item, "tenant_id": other, "content": "x" * 200_000},
        {**item, "tenant_id": tenant, "content": f"erased {suffix} " + "y" * 200_000}]},
        task="conversation.save_messages")

    container.eraser.erase_tenant(tenant)
    run_erasure_tasks(container)

    with container.engine.connect() as connection:
        exact = [zlib.decompress(p).decode() for p in connection.scalars(
            select(dead_letters.c.payload).where(dead_letters.c.payload.is_not(None)))]
    assert [p for p in exact if f"erased {suffix}" in p] == []


def test_the_queue_pass_is_idempotent_so_a_crash_midway_is_healed_by_running_it_again(
        container) -> None:
    """A worker dying midway gets the task again (acks_late): the pass over the queue, run
    again, erases what is left and changes nothing else."""
    suffix = container.settings.redis_key_prefix.strip(":")
    tenant = f"ip-{suffix}"
    dead_letter(container, {"tenant_id": tenant, "content": f"erased {suffix}"})
    dead_letter(container, {"tenant_id": f"ipo-{suffix}", "content": f"kept {suffix}"})
    target = [(tenant, None, None)]
    assert container.eraser.erase_queued_now(target) == 1
    assert container.eraser.erase_queued_now(target) == 0
    queued = queued_payloads(container)
    assert [p for p in queued if f"erased {suffix}" in p] == []
    assert len([p for p in queued if f"kept {suffix}" in p]) == 1
