"""The service as a LangChain chat history, under RunnableWithMessageHistory."""
from __future__ import annotations

import fakeredis
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from config.settings import Settings
from conversation.adapters.redis import RedisActiveStore
from conversation.adapters.tokenizer import TiktokenCounter
from conversation.bootstrap import Container, Overrides
from conversation.langchain import ConversationChatHistory
from tests.fakes import FakeRepository


def container() -> Container:
    return Container(Settings(), Overrides(
        active_store=RedisActiveStore(fakeredis.FakeRedis(), prefix="lc:"),
        repository=FakeRepository(),  # type: ignore[arg-type]
        tokenizer=TiktokenCounter(),
    ))


def test_runnable_with_message_history_reads_and_writes_the_service() -> None:
    services = container()
    model = FakeListChatModel(responses=["Hello Ana!", "Your name is Ana."])
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are helpful."), MessagesPlaceholder("history"), ("human", "{input}")]
    )
    chain = RunnableWithMessageHistory(
        prompt | model,
        lambda session_id: ConversationChatHistory(
            services, tenant_id="acme", session_id=session_id, agent_id="bot"),
        input_messages_key="input",
        history_messages_key="history",
    )
    config = {"configurable": {"session_id": "ws-7"}}
    chain.invoke({"input": "Hi, I'm Ana"}, config=config)
    chain.invoke({"input": "What's my name?"}, config=config)

    history = ConversationChatHistory(services, tenant_id="acme", session_id="ws-7", agent_id="bot")
    assert [(type(m), m.content) for m in history.messages] == [
        (HumanMessage, "Hi, I'm Ana"),
        (AIMessage, "Hello Ana!"),
        (HumanMessage, "What's my name?"),
        (AIMessage, "Your name is Ana."),
    ]
    conversation_id = services.active_store.session_conversation("acme", "ws-7")
    stored = services.active_store.messages(conversation_id)
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert all(m.tokens > 3 for m in stored)


def test_another_tenant_reads_nothing() -> None:
    services = container()
    ConversationChatHistory(services, tenant_id="acme", session_id="s", agent_id="b").add_messages(
        [HumanMessage("private")])
    conversation_id = services.active_store.session_conversation("acme", "s")
    intruder = ConversationChatHistory(services, tenant_id="evil", session_id="x", agent_id="b",
                                       conversation_id=conversation_id)
    assert intruder.messages == []
