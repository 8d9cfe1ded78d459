"""The circuit breaker guards what the active store hands out too: a History read through it
(issue 16: `RedisHistory` held the raw client, so its later chunk reads bypassed the breaker,
a Redis error there neither counted nor turned into ActiveStoreUnavailable)."""
from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis
from celery import Celery

from config.settings import Settings
from conversation.bootstrap import Container, Overrides
from conversation.domain.messages import NewMessage, Role
from conversation.services.ports import ActiveStoreUnavailable
from tests.fakes import FakeRepository, WordTokenizer


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def container(client: fakeredis.FakeRedis) -> Container:
    return Container(Settings(redis_key_prefix="breaker:"), Overrides(
        redis=client, repository=FakeRepository(), tokenizer=WordTokenizer(),  # type: ignore[arg-type]
        producer=Celery("breaker", set_as_current=False),
    ))


def save_conversation(container: Container, count: int) -> str:
    conversation_id = ""
    for i in range(count):
        conversation_id = container.saver.save(NewMessage(
            tenant_id="acme", session_id="s-1", agent_id="bot", role=Role.USER,
            content=f"message {i}", message_id=f"m-{i}")).conversation_id
    return conversation_id


def redis_goes_down(client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on every command fails as a lost connection does; the attempts are listed."""
    attempts: list[str] = []

    def refuse(*args: Any, **options: Any) -> Any:
        attempts.append(str(args[0]).upper())
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(client, "execute_command", refuse)
    return attempts


def test_a_redis_error_in_a_later_chunk_read_trips_the_breaker(
    container: Container, client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation_id = save_conversation(container, 6)
    owner, history = container.active_store.owned_history(conversation_id, expected=2)
    assert owner == "acme" and history.count() == 6
    chunks = history.newest_chunks()
    assert [record.id for record in next(chunks)] == ["m-5", "m-4"]

    attempts = redis_goes_down(client, monkeypatch)
    with pytest.raises(ActiveStoreUnavailable):
        next(chunks)  # the next chunk's LRANGE
    assert attempts == ["LRANGE"]
    assert container.breaker.degraded
    # Open: the next active-store call fails at once, without asking Redis.
    with pytest.raises(ActiveStoreUnavailable):
        container.active_store.get_conversation(conversation_id)
    assert attempts == ["LRANGE"]


def test_storing_counts_through_the_history_is_guarded_too(
    container: Container, client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation_id = save_conversation(container, 2)
    _, history = container.active_store.owned_history(conversation_id, expected=2)
    redis_goes_down(client, monkeypatch)
    with pytest.raises(ActiveStoreUnavailable):
        history.store_counts("o200k_base", {"m-0": 7})
    assert container.breaker.degraded


def test_a_context_whose_later_chunk_fails_answers_empty_and_opens_the_breaker(
    container: Container, client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The context read's caller expects what any Redis failure gives it: the contract's empty
    context (never a failed task), and the breaker open so the next reads go to PostgreSQL at
    once instead of each waiting on Redis."""
    conversation_id = save_conversation(container, 40)
    builder = container.context_builder
    # 200 tokens: 8 messages in the first read, then older chunks (40 short ones fit).
    full = builder.get_context(tenant_id="acme", conversation_id=conversation_id,
                               max_tokens=200)
    assert full["total_messages"] == 40 and len(full["messages"]) > 8

    lrange = client.lrange

    def chunk_fails(key: Any, start: int, end: int) -> Any:
        if start < -8:  # an older chunk: the first read's LRANGE went in its pipeline
            raise redis.ConnectionError("Connection reset by peer")
        return lrange(key, start, end)

    monkeypatch.setattr(client, "lrange", chunk_fails)
    context = builder.get_context(tenant_id="acme", conversation_id=conversation_id,
                                  max_tokens=200)
    assert context["messages"] == [] and context["total_messages"] == 0
    assert container.breaker.degraded


def test_what_the_history_already_read_is_answered_while_the_breaker_is_open(
    container: Container, client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread's Redis error opens the breaker after this read's round trip: the count,
    the first message and the newest chunk came in that round trip, so the context is built
    from them, as it was before the History was guarded (refusing them answered an empty
    context for nothing)."""
    conversation_id = save_conversation(container, 3)
    _, history = container.active_store.owned_history(conversation_id, expected=3)
    container.breaker.failed(redis.ConnectionError("another thread's call"))
    attempts = redis_goes_down(client, monkeypatch)
    assert history.count() == 3
    assert history.first().id == "m-0"
    assert [r.id for chunk in history.newest_chunks() for r in chunk] == ["m-2", "m-1", "m-0"]
    assert attempts == []  # nothing asked of Redis
    assert container.breaker.degraded


def test_a_read_that_asks_redis_nothing_never_says_redis_is_back(
    container: Container, client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the retry time, the breaker lets the next call try Redis, and that call's success
    ends degraded mode: a History answering from memory proves nothing about Redis."""
    conversation_id = save_conversation(container, 2)
    _, history = container.active_store.owned_history(conversation_id, expected=2)
    container.breaker.retry_after = 0.0
    container.breaker.failed(redis.ConnectionError("Redis went down meanwhile"))
    redis_goes_down(client, monkeypatch)
    assert history.count() == 2
    assert container.breaker.degraded  # still down: the next store call finds out
    with pytest.raises(ActiveStoreUnavailable):
        container.active_store.get_conversation(conversation_id)
