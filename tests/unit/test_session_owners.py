"""A session new to Redis is claimed in the repository (its durable owner) before Redis owns
it, with or without an explicit conversation id, on standalone Redis and on Cluster's two-step
path; a refused claim leaves nothing in Redis."""
from __future__ import annotations

import fakeredis
import pytest

from conversation.adapters.redis import RedisActiveStore
from conversation.domain.errors import ForeignSession
from conversation.domain.messages import NewMessage, Role
from conversation.services.save import MessageSaver
from tests.fakes import FakeRepository, WordTokenizer


def message(tenant: str, session: str, text: str, **extra: object) -> NewMessage:
    return NewMessage(tenant_id=tenant, session_id=session, agent_id="bot", role=Role.USER,
                      content=text, message_id=text, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("cluster", [False, True])
def test_a_session_is_claimed_durably_and_a_refused_claim_leaves_no_trace(cluster: bool) -> None:
    store = RedisActiveStore(fakeredis.FakeRedis(), prefix="unit:")
    store.cluster = cluster  # Redis Cluster's path: the session's slot, then the conversation's
    repository = FakeRepository()
    saver = MessageSaver(store, repository, WordTokenizer())

    first = saver.save(message("a", "s1", "m1", conversation_id="c1"))
    assert (first.conversation_id, first.tier, first.stored) == ("c1", "redis", True)
    assert saver.save(message("a", "s1", "m2")).conversation_id == "c1"
    assert saver.save(message("a", "s1", "m1", conversation_id="c1")).stored is False
    assert repository.session_owners == {"s1": "a"}

    # Redis forgets the session (its records expired after a migration): still a's.
    store.client.delete(store.keys.session_mapping("s1"), store.keys.session_state("s1"))
    for extra in ({"conversation_id": "c9"}, {}):
        with pytest.raises(ForeignSession):
            saver.save(message("b", "s1", "b claims", **extra))
    assert store.session_state("s1") is None  # nothing of b's left to lock a out
    assert saver.save(message("a", "s1", "m3")).stored


@pytest.mark.parametrize("explicit", [False, True], ids=["session's conversation", "named"])
def test_a_released_sessions_state_stops_expiring_when_the_session_is_used_again(
        explicit: bool) -> None:
    """A migrated session's state is kept a while, then expires (release_session.lua); a new
    message on the session makes it live again, for good. Only such a state (released: no
    mapping) carries an expiry, so the save script removes one only there."""
    store = RedisActiveStore(fakeredis.FakeRedis(), prefix="unit:")
    saver = MessageSaver(store, FakeRepository(), WordTokenizer())
    first = saver.save(message("a", "s1", "m1"))
    state_key = store.keys.session_state("s1")
    assert store.client.ttl(state_key) == -1  # live: no expiry
    generation = store.session_state("s1").generation  # type: ignore[union-attr]
    assert store.release_session("s1", first.conversation_id, generation)
    assert store.client.ttl(state_key) > 0  # released: kept a while
    extra = {"conversation_id": "c-next"} if explicit else {}
    assert saver.save(message("a", "s1", "m2", **extra)).stored
    assert store.client.ttl(state_key) == -1
    assert saver.save(message("a", "s1", "m3")).stored  # the mapping is there: no PERSIST
    assert store.client.ttl(state_key) == -1
