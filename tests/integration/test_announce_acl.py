"""A batch's save under a Redis ACL user who may PUBLISH but not run PUBSUB.

The save scripts ask PUBSUB NUMSUB who waits before they announce a batch's messages; on an
error there (after the appends: Lua does not roll back) the call failed with its messages
stored, and its retry answered "duplicate" for each. They announce every message instead."""
from __future__ import annotations

import uuid

import pytest
import redis

from conversation.adapters.redis import RedisActiveStore
from conversation.domain.messages import NewMessage, Role
from conversation.services.save import MessageSaver

pytestmark = pytest.mark.integration


@pytest.fixture
def no_pubsub_client(redis_server: str):  # noqa: ANN201
    admin = redis.Redis.from_url(f"{redis_server}/0")
    user, password = f"no-pubsub-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                      channels=["*"], commands=["+@all", "-pubsub"])
    client = redis.Redis.from_url(f"{redis_server}/0", username=user, password=password)
    yield client
    client.close()
    admin.acl_deluser(user)
    admin.close()


def test_a_batch_is_saved_once_without_pubsub_rights(no_pubsub_client, container) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        no_pubsub_client.pubsub_numsub("anything")  # the user really lacks it
    active = RedisActiveStore(no_pubsub_client, prefix=container.settings.redis_key_prefix)
    saver = MessageSaver(active, container.repository, container.tokenizer)
    batch = [NewMessage(tenant_id="acme", session_id="acl-s1", agent_id="bot", role=Role.USER,
                        content=text, message_id=text) for text in ("one", "two")]

    outcomes = saver.save_many(batch)

    assert [(o.stored, o.tier) for o in outcomes] == [(True, "redis")] * 2
    assert [m.content for m in active.messages(outcomes[0].conversation_id)] == ["one", "two"]
