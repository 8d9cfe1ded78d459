"""A batch's messages without created_at share one reading of the clock, so their order in the
conversation is their arrival order: the order of the batch, also when some of a session's
messages name its conversation and others do not (they run as different groups of the save
script, and a group ran whole before the next)."""
from __future__ import annotations

import fakeredis

from conversation.adapters.redis import RedisActiveStore
from conversation.adapters.tokenizer import TiktokenCounter
from conversation.domain.messages import NewMessage, Role
from conversation.services.save import MessageSaver
from tests.fakes import FakeRepository


def message(text: str, conversation_id: str | None = None) -> NewMessage:
    return NewMessage(tenant_id="t", session_id="s", agent_id="a", role=Role.USER,
                      content=text, message_id=text, conversation_id=conversation_id)


def test_a_batch_keeps_its_order_whether_or_not_its_messages_name_the_conversation() -> None:
    active = RedisActiveStore(fakeredis.FakeRedis(), prefix="ao:")
    saver = MessageSaver(active, FakeRepository(), TiktokenCounter())
    conversation_id = saver.save(message("first")).conversation_id
    outcomes = saver.save_many([message("a"), message("b", conversation_id), message("c"),
                                message("d", conversation_id)])
    assert {outcome.conversation_id for outcome in outcomes} == {conversation_id}
    assert [m.id for m in active.messages(conversation_id)] == [
        "first", "a", "b", "c", "d"]
