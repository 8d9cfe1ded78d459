"""The LangChain history reads through Tiers: with Redis down, a conversation PostgreSQL holds
is still read (it raised ActiveStoreUnavailable before), and another tenant's stays empty."""
from __future__ import annotations

from langchain_core.messages import HumanMessage

from config.settings import Settings
from conversation.bootstrap import Container, Overrides
from conversation.domain.messages import Conversation, NewMessage, Role
from conversation.langchain import ConversationChatHistory
from conversation.services.ports import ActiveStoreUnavailable
from tests.fakes import FakeRepository, WordTokenizer


class DownStore:
    """Redis down: every call fails as the circuit breaker makes it fail."""

    def __getattr__(self, name: str):  # noqa: ANN204
        def fail(*args: object, **kwargs: object) -> None:
            raise ActiveStoreUnavailable("down")
        return fail


def test_the_history_reads_postgresql_while_redis_is_down() -> None:
    repository = FakeRepository()
    container = Container(Settings(), Overrides(
        active_store=DownStore(), repository=repository,  # type: ignore[arg-type]
        tokenizer=WordTokenizer(),  # type: ignore[arg-type]
    ))
    message = container.saver.build_message(NewMessage(
        tenant_id="acme", session_id="s-1", agent_id="bot", role=Role.USER,
        content="my order is late", message_id="m-1"))
    conversation = Conversation(id="c-1", tenant_id="acme", session_id="s-1", agent_id="bot",
                                created_at=message.created_at)
    repository.store_conversation(conversation, [message], None)  # type: ignore[arg-type]

    history = ConversationChatHistory(container, tenant_id="acme", session_id="s-1",
                                      agent_id="bot", conversation_id="c-1")
    assert history.messages == [HumanMessage(content="my order is late", id="m-1")]
    intruder = ConversationChatHistory(container, tenant_id="other", session_id="s-9",
                                       agent_id="bot", conversation_id="c-1")
    assert intruder.messages == []
