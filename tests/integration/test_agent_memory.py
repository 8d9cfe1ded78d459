"""ConversationMemory (issue 19) on the real service: a create_agent agent in-process (a
Container on the run's Redis and PostgreSQL) and remote (by task name, through a real worker)."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from langchain.agents import create_agent
from langchain_core.messages import (
    HumanMessage,
    SystemMessage,
    convert_to_messages,
    convert_to_openai_messages,
)

from config.settings import Settings
from conversation.bootstrap import Container
from conversation.client import ConversationClient
from conversation.domain.messages import Role, chat_message
from conversation.langchain_middleware import ConversationMemory
from tests.agent_fakes import SameIdModel, ToolCallingModel, lookup_order
from tests.openai_rules import assert_tool_messages_answer_calls
from tests.workers import producer, running_worker, wait_until

SYSTEM = "You are the support agent of ACME."
TURNS = ["Where is order 4521?", "And 4522 and 4523?", "Thanks, and 4521 again?"]
# What the service holds when each model call is made: 2 calls a turn, 4-5 messages a turn.
SIZES = [1, 3, 5, 8, 10, 12]


@pytest.fixture
def worker(settings: Settings, test_var_dir: Path) -> Iterator[Celery]:
    app = producer(settings)
    with running_worker(settings, test_var_dir / f"memory-{uuid.uuid4().hex[:6]}.log"):
        yield app
    app.close()


def run_and_check(service: Any, container: Container, session: str) -> None:
    tenant = f"mem-{container.settings.redis_key_prefix.strip(':')}"
    model = ToolCallingModel(inputs=[])
    memory = ConversationMemory(service, tenant_id=tenant, agent_id="bot", window="8k")
    bot = create_agent(model, tools=[lookup_order], system_prompt=SYSTEM, middleware=[memory])
    for question in TURNS:
        result = bot.invoke({"messages": [HumanMessage(question)]},
                            {"configurable": {"thread_id": session}})
        assert result["messages"][-1].content.startswith("Order")

    def history() -> list[Any]:
        conversation_id = container.active_store.session_conversation(tenant, session)
        return container.active_store.messages(conversation_id) if conversation_id else []

    stored = wait_until(lambda: len(h := history()) == 13 and h, timeout=30,
                        what="the third turn's answer stored")
    assert [m.role for m in stored] == [
        Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT,
        Role.USER, Role.ASSISTANT, Role.TOOL, Role.TOOL, Role.ASSISTANT,
        Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    assert [m.content for m in stored if m.role is Role.USER] == TURNS
    assert len({m.id for m in stored}) == 13
    calls = [c["id"] for m in stored if m.tool_calls for c in m.tool_calls]
    assert [m.tool_call_id for m in stored if m.role is Role.TOOL] == calls
    # Each model call was given the agent's prompt, then exactly the service's context: here
    # all the conversation held at that moment.
    assert len(model.inputs) == len(SIZES)
    for given, size in zip(model.inputs, SIZES, strict=True):
        entries = [chat_message(str(m.role), m.content, m.name, m.tool_calls, m.tool_call_id)
                   for m in stored[:size]]
        assert given == [SystemMessage(SYSTEM), *convert_to_messages(entries)]


def test_an_agent_with_the_memory_in_process(container: Container) -> None:
    run_and_check(container, container, "in-process")


def test_an_agent_with_the_memory_through_a_worker(container: Container,
                                                    worker: Celery) -> None:
    run_and_check(worker, container, "remote")


def test_through_a_worker_a_bad_history_and_reused_call_ids_reach_the_model_as_apis_take_them(
        container: Container, worker: Celery) -> None:
    """Another producer left a call unanswered and an orphan result; the model reuses call
    ids ("call_0") each turn: every model input keeps OpenAI's tool rule, every turn is kept."""
    tenant, session = f"mem-{container.settings.redis_key_prefix.strip(':')}", "bad-history"
    client = ConversationClient(worker)
    base = {"tenant_id": tenant, "session_id": session, "agent_id": "other"}
    client.save_messages([
        {**base, "message_id": "p0", "role": "user", "content": "earlier"},
        {**base, "message_id": "p1", "role": "assistant", "content": "", "tool_calls": [
            {"id": "call_0", "type": "function",
             "function": {"name": "lookup_order", "arguments": '{"order": "1"}'}}]},
        {**base, "message_id": "p2", "role": "user", "content": "hello?"},
        {**base, "message_id": "p3", "role": "tool", "content": "late", "tool_call_id": "call_0"},
    ])

    def history() -> list[Any]:
        conversation_id = container.active_store.session_conversation(tenant, session)
        return container.active_store.messages(conversation_id) if conversation_id else []

    wait_until(lambda: len(history()) == 4, timeout=30, what="the planted history stored")
    model = SameIdModel(inputs=[])
    memory = ConversationMemory(worker, tenant_id=tenant, agent_id="bot", window="8k")
    bot = create_agent(model, tools=[lookup_order], system_prompt=SYSTEM, middleware=[memory])
    for question in ["Where is order 4521?", "And 4522?"]:
        bot.invoke({"messages": [HumanMessage(question)]},
                   {"configurable": {"thread_id": session}})
    for given in model.inputs:
        assert_tool_messages_answer_calls(convert_to_openai_messages(given))
    # Each call saw the service's context (the planted user messages are in it), not a fallback.
    assert [m.content for m in model.inputs[0]] == [SYSTEM, "earlier", "hello?",
                                                     "Where is order 4521?"]
    stored = wait_until(lambda: len(h := history()) == 12 and h, timeout=30,
                        what="both turns stored")
    assert [m.content for m in stored[4:]] == [
        "Where is order 4521?", "", "Order 4521 is shipped.", "Order 4521 is shipped.",
        "And 4522?", "", "Order 4522 is in the warehouse.",
        "Order 4521 is shipped. Order 4522 is in the warehouse."]
    assert [m.tool_call_id for m in stored if m.role is Role.TOOL] == ["call_0"] * 3
