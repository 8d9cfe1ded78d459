"""WAITS_PER_TENANT on a real Redis: a tenant's reads that block for their message hold a
worker process each; past its cap, a read answers without blocking, and other tenants keep
theirs. No timing asserts: each read's blocking waits on the announcement are recorded."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from conversation.adapters.redis import RedisActiveStore
from conversation.domain.messages import NewMessage, Role
from conversation.services.context import ContextBuilder
from conversation.services.save import MessageSaver
from tests.fakes import FakeRepository, WordTokenizer

WINDOWS = {"8k": ("token_buffer", 6000)}


@pytest.fixture
def active(redis_server: str) -> Iterator[RedisActiveStore]:
    client = redis.Redis.from_url(f"{redis_server}/0")
    store = RedisActiveStore(client, prefix=f"t{uuid.uuid4().hex[:8]}:")
    yield store
    client.close()


def services(active: RedisActiveStore, cap: int) -> tuple[MessageSaver, ContextBuilder, list]:
    """The saver, a builder with `cap` waits a tenant (0.3 s each), and the blocking waits
    each read made (a list per read that listened)."""
    repository = FakeRepository()
    saver = MessageSaver(active, repository, WordTokenizer())
    builder = ContextBuilder(active, repository, WordTokenizer(), windows=WINDOWS,
                             model_windows={}, wait_seconds=0.3, wait_slots=active,
                             waits_per_tenant=cap)
    blocks: list[list[float]] = []
    listen_for = active.listen_for

    def listening(tenant_id: str, message_id: str) -> Any:
        listener = listen_for(tenant_id, message_id)
        waits: list[float] = []
        blocks.append(waits)
        wait = listener.wait

        def recording(seconds: float) -> bool:
            waits.append(seconds)
            return wait(seconds)

        listener.wait = recording  # type: ignore[method-assign]
        return listener

    active.listen_for = listening  # type: ignore[method-assign]
    return saver, builder, blocks


def message(tenant: str, message_id: str, content: str, **extra: Any) -> NewMessage:
    return NewMessage(tenant_id=tenant, session_id=f"{tenant}-s", agent_id="bot",
                      role=Role.USER, content=content, message_id=message_id, **extra)


def read(builder: ContextBuilder, tenant: str, message_id: str) -> dict[str, Any]:
    return builder.get_context(tenant_id=tenant, session_id=f"{tenant}-s", window="8k",
                               wait_for_message_id=message_id)


def test_past_its_cap_a_tenants_read_answers_without_blocking(
        active: RedisActiveStore) -> None:
    saver, builder, blocks = services(active, cap=1)
    saver.save(message("acme", "m-1", "hello"))
    saver.save(message("other", "o-1", "theirs"))
    held = active.take_wait_slot("acme", 30, cap=1)  # another worker's read, blocking
    assert held is not None

    capped = read(builder, "acme", "never-sent")
    assert capped["waited_for"] == "missing"
    assert [m["content"] for m in capped["messages"]] == ["hello"]
    assert blocks[-1] == []  # answered without blocking

    # A message that is there is found all the same: the cap costs only the blocking.
    assert read(builder, "acme", "m-1")["waited_for"] == "found"

    # Another tenant keeps its own slots.
    other = read(builder, "other", "never-sent")
    assert other["waited_for"] == "missing" and blocks[-1] != []

    # The slot given back, the tenant's reads block again.
    active.give_back_wait_slot("acme", held)
    again = read(builder, "acme", "never-sent")
    assert again["waited_for"] == "missing" and blocks[-1] != []


def test_a_read_gives_its_slot_back(active: RedisActiveStore) -> None:
    saver, builder, blocks = services(active, cap=1)
    saver.save(message("acme", "m-1", "hello"))
    for _ in range(3):  # one at a time: each finds the slot free
        assert read(builder, "acme", "never-sent")["waited_for"] == "missing"
        assert blocks[-1] != []
    assert active.take_wait_slot("acme", 30, cap=1) is not None


def test_a_slot_whose_holder_died_lapses_at_its_deadline(active: RedisActiveStore) -> None:
    assert active.take_wait_slot("acme", 30, cap=1) is not None
    assert active.take_wait_slot("acme", 30, cap=1) is None
    lapsed = RedisActiveStore(active.client, prefix=active.keys.prefix + "lapsed:")
    assert lapsed.take_wait_slot("acme", -1, cap=1) is not None  # its deadline has passed
    assert lapsed.take_wait_slot("acme", 30, cap=1) is not None


def test_without_a_cap_waits_are_not_counted(active: RedisActiveStore) -> None:
    saver, builder, blocks = services(active, cap=0)
    saver.save(message("acme", "m-1", "hello"))
    assert active.take_wait_slot("acme", 30, cap=1) is not None  # would fill a cap of 1
    assert read(builder, "acme", "never-sent")["waited_for"] == "missing"
    assert blocks[-1] != []
