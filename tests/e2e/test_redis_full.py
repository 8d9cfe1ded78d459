"""A full active store (maxmemory reached, noeviction: every write answers -OOM) is an
outage, not a bad request: saves go to PostgreSQL, nothing is dead-lettered, and once Redis
has room again every message ends in PostgreSQL once, in order."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from config.settings import Settings
from conversation.adapters.postgres.schema import conversations, dead_letters, messages
from conversation.bootstrap import Container
from conversation.embedded import EmbeddedRedis
from tests.workers import producer, running_worker, wait_until

pytestmark = pytest.mark.e2e

# Sessions a and b start before Redis is full; c and d while it is. Redis 6 and 7 let a
# script that already wrote go on past maxmemory, so a message of a known session may still
# land in Redis; a new session's first write (its state) is refused with -OOM.
SESSIONS = ("full-a", "full-b", "full-c", "full-d")
BEFORE, DURING = 10, 20


@pytest.fixture
def full_redis(test_var_dir: Path) -> Iterator[EmbeddedRedis]:
    """An active-store Redis of this test's own, which it fills to its memory limit."""
    server = EmbeddedRedis(test_var_dir / "full-redis", persist=False).start()
    yield server
    server.stop()


def fill(client: redis.Redis) -> None:
    """1 MB at most, no eviction, and filler keys up to it: every write now gets -OOM.
    Then a limit well under what is used, so that freed client buffers make no room."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1mb")
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(10_000):
            client.set(f"filler:{i}", "x" * 1000)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used - 256 * 1024))


def test_a_full_redis_sends_saves_to_postgresql_and_loses_nothing(
    settings: Settings, full_redis: EmbeddedRedis, test_var_dir: Path
) -> None:
    settings = replace(settings, redis_url=f"{full_redis.url}/0")
    container = Container(settings)
    client = redis.Redis.from_url(settings.redis_url or "")
    app = producer(settings)
    tenant = f"full-{settings.redis_key_prefix.strip(':')}"

    def session(i: int) -> str:
        return SESSIONS[i % (2 if i < BEFORE else 4)]

    def send(i: int) -> None:
        app.send_task("conversation.save_message", kwargs={
            "tenant_id": tenant, "session_id": session(i), "agent_id": "bot",
            "role": "user", "content": f"message {i}", "message_id": f"m{i:03d}",
            "created_at": f"2026-11-24T10:00:{i:02d}Z"}, queue="conversation.save")

    def in_redis() -> int:
        ids = [container.active_store.session_conversation(tenant, s) for s in SESSIONS]
        return sum(container.active_store.message_count(c) for c in ids if c)

    def in_postgres() -> list[tuple[str, str]]:
        with container.engine.connect() as connection:
            return connection.execute(
                select(messages.c.id, conversations.c.session_id)
                .join(conversations, conversations.c.id == messages.c.conversation_id)
                .where(messages.c.tenant_id == tenant)
                # The service's order: created_at, then arrival (seq is arrival alone).
                .order_by(conversations.c.session_id, messages.c.created_at, messages.c.seq)
            ).all()

    def letters() -> int:
        with container.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(dead_letters).where(
                dead_letters.c.kwargs["tenant_id"].astext == tenant)) or 0)

    try:
        with running_worker(settings, test_var_dir / "w-full.log", concurrency=2):
            for i in range(BEFORE):
                send(i)
            wait_until(lambda: in_redis() == BEFORE, what="the first messages in Redis")

            fill(client)
            for i in range(BEFORE, BEFORE + DURING):
                send(i)
            wait_until(lambda: in_redis() + len(in_postgres()) == BEFORE + DURING, timeout=30,
                       what="every save, in Redis or (refused there) in PostgreSQL")
            assert in_postgres(), "saves Redis refused went to PostgreSQL"

            # Room again: the sessions close, their conversations migrate, whole.
            client.config_set("maxmemory", "0")
            for key in client.scan_iter("filler:*"):
                client.delete(key)
            for name in SESSIONS:
                app.send_task("conversation.session_closed",
                              kwargs={"tenant_id": tenant, "session_id": name},
                              queue="conversation.sessions")
            wait_until(lambda: len(in_postgres()) == BEFORE + DURING and in_redis() == 0,
                       timeout=30, what="every message migrated")
        stored = in_postgres()
        assert sorted(i for i, _ in stored) == [f"m{i:03d}" for i in range(BEFORE + DURING)]
        for name in SESSIONS:  # one conversation each, in order
            assert [i for i, s in stored if s == name] == [
                f"m{i:03d}" for i in range(BEFORE + DURING) if session(i) == name]
        assert letters() == 0, "nothing dead-lettered for a full Redis"
    finally:
        app.close()
        client.close()
        container.close()
