"""A tool-using LangChain agent over the service's history (issue 17): the calls and their ids
survive the round trip, and the context is one OpenAI accepts."""
from __future__ import annotations

import json

import fakeredis
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage, convert_to_openai_messages
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from config.settings import Settings
from conversation.adapters.redis import RedisActiveStore
from conversation.adapters.tokenizer import TiktokenCounter
from conversation.bootstrap import Container, Overrides
from conversation.langchain import ConversationChatHistory
from conversation.services.context import ContextBuilder
from tests.fakes import FakeRepository
from tests.openai_rules import assert_tool_messages_answer_calls

ORDERS = {"4521": "shipped", "4522": "in the warehouse", "4523": "delivered"}


def container() -> Container:
    return Container(Settings(), Overrides(
        active_store=RedisActiveStore(fakeredis.FakeRedis(), prefix="lct:"),
        repository=FakeRepository(),  # type: ignore[arg-type]
        tokenizer=TiktokenCounter(),
    ))


def lookup_order(order: str) -> str:
    return ORDERS[order]


def call(call_id: str, order: str) -> dict:
    return {"name": "lookup_order", "args": {"order": order}, "id": call_id, "type": "tool_call"}


def run_turn(chain, config: dict, question: str) -> None:
    """One agent turn: the question, the model's calls, the tools' results, the answer."""
    reply = chain.invoke({"input": [HumanMessage(question)]}, config=config)
    while reply.tool_calls:
        results = [ToolMessage(lookup_order(**c["args"]), tool_call_id=c["id"])
                   for c in reply.tool_calls]
        reply = chain.invoke({"input": results}, config=config)


def test_an_agent_with_tools_keeps_its_calls_across_turns() -> None:
    services = container()
    model = GenericFakeChatModel(messages=iter([
        AIMessage("", tool_calls=[call("call_1", "4521")]),
        AIMessage("Order 4521 has shipped."),
        AIMessage("Let me look both up.", tool_calls=[call("call_2", "4522"),
                                                      call("call_3", "4523")]),
        AIMessage("4522 is in the warehouse; 4523 was delivered."),
    ]))
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You look orders up."), MessagesPlaceholder("history"),
         MessagesPlaceholder("input")]
    )
    chain = RunnableWithMessageHistory(
        prompt | model,
        lambda session_id: ConversationChatHistory(
            services, tenant_id="acme", session_id=session_id, agent_id="bot"),
        input_messages_key="input",
        history_messages_key="history",
    )
    config = {"configurable": {"session_id": "agent-1"}}
    run_turn(chain, config, "Where is order 4521?")
    # The second turn reads the first back (calls, results) as its history: it did not break.
    run_turn(chain, config, "And 4522 and 4523?")

    history = ConversationChatHistory(services, tenant_id="acme", session_id="agent-1",
                                      agent_id="bot").messages
    assert [type(m).__name__ for m in history] == [
        "HumanMessage", "AIMessage", "ToolMessage", "AIMessage",
        "HumanMessage", "AIMessage", "ToolMessage", "ToolMessage", "AIMessage",
    ]
    assert [(c["id"], c["name"], c["args"]) for c in history[1].tool_calls] == [
        ("call_1", "lookup_order", {"order": "4521"})]
    assert [(c["id"], c["args"]) for c in history[5].tool_calls] == [
        ("call_2", {"order": "4522"}), ("call_3", {"order": "4523"})]
    assert [(m.tool_call_id, m.content) for m in history if isinstance(m, ToolMessage)] == [
        ("call_1", "shipped"), ("call_2", "in the warehouse"), ("call_3", "delivered")]

    builder = ContextBuilder(services.active_store, services.repository, services.tokenizer,
                             windows=services.settings.windows, model_windows={})
    context = builder.get_context(tenant_id="acme", session_id="agent-1", window="8k")
    assert "error" not in context
    assert context["messages"][1] == {
        "role": "assistant", "content": "",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "lookup_order", "arguments": '{"order": "4521"}'}}],
    }
    assert context["messages"][2] == {"role": "tool", "content": "shipped",
                                      "tool_call_id": "call_1"}
    openai = convert_to_openai_messages(context["messages"])
    assert_tool_messages_answer_calls(openai)
    assert [json.loads(c["function"]["arguments"]) for c in openai[5]["tool_calls"]] == [
        {"order": "4522"}, {"order": "4523"}]


def test_the_rule_checker_refuses_what_openai_refuses() -> None:
    """The check is strict: a tool result without its call, or a call left unanswered."""
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    with pytest.raises(AssertionError):
        assert_tool_messages_answer_calls([{"role": "user", "content": "x"},
                                           {"role": "tool", "content": "r", "tool_call_id": "c1"}])
    with pytest.raises(AssertionError):
        assert_tool_messages_answer_calls([{"role": "assistant", "content": "", "tool_calls": calls},
                                           {"role": "user", "content": "x"}])
    assert_tool_messages_answer_calls([{"role": "assistant", "content": "", "tool_calls": calls},
                                       {"role": "tool", "content": "r", "tool_call_id": "c1"}])


def test_a_tool_message_without_its_call_id_is_refused() -> None:
    history = ConversationChatHistory(container(), tenant_id="acme", session_id="s",
                                      agent_id="bot")
    with pytest.raises(ValueError, match="tool_calls"):
        history.add_messages([AIMessage("", tool_calls=[call("a", "1"), call("a", "2")])])


def test_arguments_nested_too_deep_to_parse_read_back_as_an_invalid_call() -> None:
    """Stored before the save schema capped the nesting: json.loads raises RecursionError on
    them; the history still reads, the call as LangChain's InvalidToolCall with its text."""
    from conversation.domain.messages import Message, Role
    from conversation.langchain import to_langchain

    deep = "[" * 3000 + "]" * 3000
    stored = Message("m1", Role.ASSISTANT, "", "2026-01-01T00:00:00.000000Z", 5, "cl100k_base",
                     tool_calls=[{"id": "c1", "type": "function",
                                  "function": {"name": "f", "arguments": deep}}])
    message = to_langchain(stored)
    assert isinstance(message, AIMessage) and message.tool_calls == []
    assert [(c["id"], c["args"]) for c in message.invalid_tool_calls] == [("c1", deep)]
