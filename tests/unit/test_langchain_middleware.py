"""ConversationMemory, the create_agent middleware (issue 19), on fakeredis and fakes: what each
turn stores, that the model sees exactly the service's context, and that no failure of the
service fails the agent."""
from __future__ import annotations

import ast
import asyncio
import logging
import subprocess
import sys
import uuid
from typing import Any

import fakeredis
import pytest
from celery import Celery
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRetryMiddleware
from langchain_core.messages import HumanMessage, SystemMessage, convert_to_openai_messages
from langchain_core.tools import ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver

from config.settings import PROJECT_ROOT, Settings
from conversation.adapters.redis import RedisActiveStore
from conversation.adapters.tokenizer import TiktokenCounter
from conversation.bootstrap import Container, Overrides
from conversation.client import ConversationClient
from conversation.domain.messages import NewMessage, Role, chat_message
from conversation.langchain_middleware import ConversationMemory, context_messages
from conversation.langchain_middleware.ids import _NAMESPACE
from conversation.langchain_middleware.service import _InProcess
from conversation.services.context import ContextBuilder
from tests.agent_fakes import SameIdModel, ToolCallingModel, lookup_order
from tests.fakes import FakeRepository
from tests.openai_rules import assert_tool_messages_answer_calls

SYSTEM = "You are the support agent of ACME."
CONFIG = {"configurable": {"thread_id": "s1"}}


class CountingTokenizer(TiktokenCounter):
    """Records the content of every message it counts."""

    def __init__(self) -> None:
        super().__init__()
        self.counted: list[str] = []

    def message_cost(self, role: str, content: str, *args: Any, **kwargs: Any) -> int:
        self.counted.append(content)
        return super().message_cost(role, content, *args, **kwargs)


class RecordingContexts(ContextBuilder):
    """The context builder, keeping every context it answered."""

    answered: list[dict[str, Any]]

    def get_context(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context(**kwargs)
        self.answered.append(context)
        return context


def container(tokenizer: TiktokenCounter | None = None) -> Container:
    settings = Settings()
    active = RedisActiveStore(fakeredis.FakeRedis(), prefix="mw:")
    repository = FakeRepository()
    tokenizer = tokenizer or TiktokenCounter()
    contexts = RecordingContexts(active, repository, tokenizer, windows=settings.windows,
                                 model_windows=settings.model_windows)
    contexts.answered = []
    return Container(settings, Overrides(active_store=active, repository=repository,
                                         tokenizer=tokenizer, context_builder=contexts))


def agent(service: Any, model: ToolCallingModel, *extra: AgentMiddleware,
          checkpointer: Any = None) -> Any:
    memory = ConversationMemory(service, tenant_id="acme", agent_id="bot", window="8k")
    return create_agent(model, tools=[lookup_order], system_prompt=SYSTEM,
                        middleware=[*extra, memory], checkpointer=checkpointer)


def stored(services: Container, session: str = "s1") -> list[Any]:
    conversation_id = services.active_store.session_conversation("acme", session)
    return services.active_store.messages(conversation_id) if conversation_id else []


def as_chat(messages: list[Any]) -> list[dict[str, Any]]:
    return [chat_message(str(m.role), m.content, m.name, m.tool_calls, m.tool_call_id)
            for m in messages]


@pytest.mark.parametrize("mode", ["sync", "async", "checkpointed"])
def test_two_turns_store_every_message_once_in_order_and_the_model_sees_the_context(
        mode: str) -> None:
    services = container()
    model = ToolCallingModel(inputs=[])
    # With a checkpointer the agent's state holds the whole thread: only what is new is saved.
    bot = agent(services, model, checkpointer=InMemorySaver() if mode == "checkpointed" else None)
    questions = [HumanMessage("Where is order 4521?"), HumanMessage("And 4522 and 4523?")]
    if mode == "async":
        async def turns() -> list[dict[str, Any]]:
            return [await bot.ainvoke({"messages": [q]}, CONFIG) for q in questions]
        first, second = asyncio.run(turns())
    else:
        first, second = (bot.invoke({"messages": [q]}, CONFIG) for q in questions)

    assert second["messages"][-1].content == (
        "Order 4521 is shipped. Order 4522 is in the warehouse. Order 4523 is delivered.")
    history = stored(services)
    assert [(m.role, m.content) for m in history] == [
        (Role.USER, "Where is order 4521?"),
        (Role.ASSISTANT, ""),
        (Role.TOOL, "Order 4521 is shipped."),
        (Role.ASSISTANT, "Order 4521 is shipped."),
        (Role.USER, "And 4522 and 4523?"),
        (Role.ASSISTANT, ""),
        (Role.TOOL, "Order 4522 is in the warehouse."),
        (Role.TOOL, "Order 4523 is delivered."),
        (Role.ASSISTANT, ("Order 4521 is shipped. Order 4522 is in the warehouse. "
                          "Order 4523 is delivered.")),
    ]
    assert history[1].tool_calls == [{"id": "call_4521_2", "type": "function", "function": {
        "name": "lookup_order", "arguments": '{"order": "4521"}'}}]
    assert [m.tool_call_id for m in history[6:8]] == ["call_4522_6", "call_4523_6"]
    assert len({m.id for m in history}) == len(history)
    assert {m.metadata.get("model") for m in history if m.role is Role.ASSISTANT} == {"gpt-4"}
    # The model was given the whole conversation, whatever the agent's state held.
    assert len(first["messages"]) == 4
    assert len(second["messages"]) == (9 if mode == "checkpointed" else 5)
    contexts = services.context_builder.answered
    assert len(model.inputs) == len(contexts) == 4
    sizes = [1, 3, 5, 8]  # what the service held when each call was made
    for given, context, size in zip(model.inputs, contexts, sizes, strict=True):
        assert given[0] == SystemMessage(SYSTEM)  # the agent's prompt stays the agent's
        assert given[1:] == context_messages(context)
        assert context["window"] == "8k"
        assert context["messages"] == as_chat(history[:size])


def long_history(services: Container, size: int) -> None:
    contents = ["Where is my order? It was due on Monday and tracking has not changed.",
                "It left our warehouse yesterday; the carrier delivers tomorrow morning.",
                "Thanks, and could you change the address to my office in Springfield?",
                "Done: the carrier has the new address, no signature is needed."]
    services.saver.save_many([
        NewMessage(tenant_id="acme", session_id="s1", agent_id="bot",
                   role=Role.USER if i % 2 == 0 else Role.ASSISTANT,
                   content=f"{contents[i % 4]} (#{i})", message_id=f"old-{i}",
                   created_at=f"2026-01-01T00:00:{i // 1000:02d}.{i % 1000:06d}Z")
        for i in range(size)])


def test_a_long_history_is_sent_within_the_window_without_a_recount() -> None:
    tokenizer = CountingTokenizer()
    services = container(tokenizer)
    long_history(services, 2000)
    model = ToolCallingModel(inputs=[])
    bot = agent(services, model)
    tokenizer.counted.clear()

    bot.invoke({"messages": [HumanMessage("Where is order 4521?")]}, CONFIG)

    contexts = services.context_builder.answered
    assert len(model.inputs) == len(contexts) == 2
    for given, context in zip(model.inputs, contexts, strict=True):
        assert given[1:] == context_messages(context)
        assert context["truncated"] and context["total_messages"] > 2000
        assert context["tokens"] <= 6000
        entries = context["messages"]
        cost = 3 + sum(tokenizer.message_cost(e["role"], e["content"], None, "cl100k_base",
                                              e.get("tool_calls"), e.get("tool_call_id"))
                       for e in entries)
        assert cost <= 6000  # within the 8k budget, counted afresh
    # Counted during the turn: the four new messages, once each at save (the check above
    # counted after the turn, and is left out).
    assert tokenizer.counted[:4] == ["Where is order 4521?", "", "Order 4521 is shipped.",
                                     "Order 4521 is shipped."]
    turn_counts = len(tokenizer.counted) - sum(len(c["messages"]) for c in contexts)
    assert turn_counts == 4


class BrokenSaver:
    def save_many(self, commands: Any) -> Any:
        raise ConnectionError("the active store is unreachable")


def test_the_agent_answers_when_the_service_fails_in_process(
        caplog: pytest.LogCaptureFixture) -> None:
    services = container()
    working = services.saver
    services.saver = BrokenSaver()  # type: ignore[assignment]
    model = ToolCallingModel(inputs=[])
    bot = agent(services, model)
    with caplog.at_level(logging.WARNING, logger="conversation.langchain_middleware"):
        result = bot.invoke({"messages": [HumanMessage("Where is order 4521?")]}, CONFIG)
    assert result["messages"][-1].content == "Order 4521 is shipped."
    # The model was given the agent's own messages.
    assert [m.type for m in model.inputs[-1]] == ["system", "human", "ai", "tool"]
    warnings = [r for r in caplog.records if r.name == "conversation.langchain_middleware"]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    # The next run tries the service again.
    services.saver = working
    bot.invoke({"messages": [HumanMessage("And 4522?")]}, CONFIG)
    assert stored(services)[0].content == "And 4522?"


def test_the_agent_answers_when_the_broker_is_unreachable(
        caplog: pytest.LogCaptureFixture) -> None:
    app = Celery("producer", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/1",
                 set_as_current=False)
    # A producer that gives up quickly: Celery's defaults retry the Redis result backend's
    # connection for ~19 s (README, "A LangChain agent's memory").
    app.conf.task_publish_retry = False
    app.conf.result_backend_transport_options = {"retry_policy": {
        "max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}}
    model = ToolCallingModel(inputs=[])
    with caplog.at_level(logging.WARNING, logger="conversation.langchain_middleware"):
        result = agent(app, model).invoke(
            {"messages": [HumanMessage("Where is order 4521?")]}, CONFIG)
    assert result["messages"][-1].content == "Order 4521 is shipped."
    warnings = [r for r in caplog.records if r.name == "conversation.langchain_middleware"]
    assert len(warnings) == 1
    app.close()


def test_a_replayed_run_stores_nothing_twice() -> None:
    services = container()
    bot = agent(services, ToolCallingModel(inputs=[]))
    question = HumanMessage("Where is order 4521?", id="question-1")
    bot.invoke({"messages": [question]}, CONFIG)
    before = [(m.id, m.role, m.content) for m in stored(services)]
    bot = agent(services, ToolCallingModel(inputs=[]))  # a new process replaying the run
    bot.invoke({"messages": [question]}, CONFIG)
    assert [(m.id, m.role, m.content) for m in stored(services)] == before
    assert len(before) == 4


class FailsOnceAfterTheModel(AgentMiddleware):
    """Outside the memory: the model's answer is saved, then the step fails once."""

    failed = False

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        response = handler(request)
        if not self.failed:
            self.failed = True
            raise TimeoutError("the step died after the model answered")
        return response


def test_a_retried_model_step_is_stored_once() -> None:
    services = container()
    model = ToolCallingModel(inputs=[])
    retry = ModelRetryMiddleware(max_retries=1, initial_delay=0, jitter=False)
    bot = agent(services, model, retry, FailsOnceAfterTheModel())
    result = bot.invoke({"messages": [HumanMessage("Where is order 4521?")]}, CONFIG)
    assert result["messages"][-1].content == "Order 4521 is shipped."
    assert len(model.inputs) == 3  # the first call twice
    history = stored(services)
    assert [m.role for m in history] == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]


def test_the_summary_comes_first_as_a_system_message() -> None:
    context = {"summary": "The customer asked about order 4521.", "messages": [
        {"role": "user", "content": "And 4522?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "lookup_order", "arguments": '{"order": "4522"}'}}]},
        {"role": "tool", "content": "Order 4522 is in the warehouse.", "tool_call_id": "c1"}]}
    messages = context_messages(context)
    assert [m.type for m in messages] == ["system", "human", "ai", "tool"]
    assert "order 4521" in messages[0].content
    assert messages[2].tool_calls == [{"name": "lookup_order", "args": {"order": "4522"},
                                       "id": "c1", "type": "tool_call"}]
    assert messages[3].tool_call_id == "c1"


class RecordingClient(ConversationClient):
    """A remote client whose tasks are served in-process, recording what is sent."""

    def __init__(self, services: Container) -> None:
        self.services = services
        self.sent: list[tuple[str, Any]] = []

    def send(self, task: str, kwargs: dict[str, Any], **options: Any) -> Any:
        raise AssertionError("the middleware uses the client's helpers")

    def save_message(self, **kwargs: Any) -> str:
        self.sent.append(("save", [kwargs["message_id"]]))
        _InProcess(self.services).save([kwargs])
        return str(kwargs["message_id"])

    def save_messages(self, messages: list[dict[str, Any]]) -> None:
        self.sent.append(("save", [m["message_id"] for m in messages]))
        _InProcess(self.services).save(messages)

    def get_context(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(("context", kwargs.pop("wait_for_message_id")))
        kwargs.pop("timeout")
        return self.services.context_builder.get_context(**kwargs)


def test_remote_each_context_read_waits_for_everything_sent_since_the_last() -> None:
    """Tasks sent on their own (an answer, each tool's result) may be stored by other workers
    after a later one: the batch sent before each read holds them again, and the read waits
    for its last message not already sent alone (or, all sent alone, its first), so the
    context never lacks one."""
    services = container()
    client = RecordingClient(services)
    bot = agent(client, ToolCallingModel(inputs=[]))
    bot.invoke({"messages": [HumanMessage("Where is order 4521?")]}, CONFIG)
    bot.invoke({"messages": [HumanMessage("And 4522 and 4523?")]}, CONFIG)
    ids = [m.id for m in stored(services)]
    assert len(ids) == 9 and len(set(ids)) == 9
    sent_alone: list[str] = []
    reads = 0
    for index, (kind, what) in enumerate(client.sent):
        if kind == "context":
            batch = client.sent[index - 1][1]
            assert set(sent_alone) <= set(batch)
            fresh = [i for i in batch if i not in sent_alone]
            assert what == (fresh[-1] if fresh else batch[0])
            sent_alone, reads = [], reads + 1
        elif index + 1 < len(client.sent) and client.sent[index + 1][0] != "context":
            sent_alone += what
    assert reads == 4
    # Before turn 2's first read: turn 1's final answer, then the new question.
    batches = [client.sent[i - 1][1] for i, (kind, _) in enumerate(client.sent)
               if kind == "context"]
    assert batches[2] == ids[3:5]


def test_a_question_larger_than_the_window_goes_to_the_model_as_the_agent_has_it(
        caplog: pytest.LogCaptureFixture) -> None:
    services = container()
    model = ToolCallingModel(inputs=[])
    question = "Please read this. " + "word " * 7000
    with caplog.at_level(logging.WARNING, logger="conversation.langchain_middleware"):
        result = agent(services, model).invoke({"messages": [HumanMessage(question)]}, CONFIG)
    assert result["messages"][-1].content.startswith("You said: Please read this.")
    assert model.inputs[0][1:] == [HumanMessage(question, id=result["messages"][0].id)]
    warnings = [r for r in caplog.records if r.name == "conversation.langchain_middleware"]
    assert len(warnings) == 1 and "larger than the window" in warnings[0].getMessage()


def test_without_a_session_the_agent_runs_on_its_own_messages_and_is_told_once(
        caplog: pytest.LogCaptureFixture) -> None:
    model = ToolCallingModel(inputs=[])
    with caplog.at_level(logging.WARNING, logger="conversation.langchain_middleware"):
        result = agent(container(), model).invoke(
            {"messages": [HumanMessage("Where is order 4521?")]})
    assert result["messages"][-1].content == "Order 4521 is shipped."
    warnings = [r for r in caplog.records if r.name == "conversation.langchain_middleware"]
    assert len(warnings) == 1 and "thread_id" in warnings[0].getMessage()


def test_the_remote_mode_imports_nothing_of_the_service_but_its_client() -> None:
    """A producer has celery and LangChain, not the service's stores or tasks."""
    code = ("import sys; import conversation.langchain_middleware; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'conversation', 'tasks', 'config', 'api', 'redis', 'sqlalchemy', 'psycopg', "
            "'marshmallow', 'tiktoken'}))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
    # The package's own parts aside (memory, service, context, ids): the client alone.
    outside = [m for m in ast.literal_eval(loaded)
               if not m.startswith("conversation.langchain_middleware")]
    assert outside == ["conversation", "conversation.client"]
    assert "conversation.langchain_middleware.memory" in loaded


# -- the review's findings (the middleware's context is always one the chat APIs accept) ------

def plant(services: Container, *entries: dict[str, Any], session: str = "s1") -> None:
    """Messages another producer stored before the agent's run, through the save path."""
    base = {"tenant_id": "acme", "session_id": session, "agent_id": "other"}
    _InProcess(services).save([{**base, "message_id": f"planted-{i}", **entry}
                               for i, entry in enumerate(entries)])


def call(call_id: str, arguments: str = '{"order": "1"}') -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": "lookup_order", "arguments": arguments}}


@pytest.mark.parametrize("arguments", ["not json", "[1]"])
def test_stored_calls_whose_arguments_are_no_json_object_do_not_fail_the_agent(
        arguments: str) -> None:
    services = container()
    plant(services, {"role": "user", "content": "earlier"},
          {"role": "assistant", "content": "", "tool_calls": [call("c1", arguments)]},
          {"role": "tool", "content": "result", "tool_call_id": "c1"},
          {"role": "assistant", "content": "earlier answer"})
    model = ToolCallingModel(inputs=[])
    result = agent(services, model).invoke({"messages": [HumanMessage("hello")]}, CONFIG)
    assert result["messages"][-1].content == "You said: hello"
    given = model.inputs[0]
    assert [m.type for m in given] == ["system", "human", "ai", "tool", "ai", "human"]
    # As conversation.langchain reads it: an InvalidToolCall, its text kept (a provider's
    # integration, e.g. langchain-openai, sends it as the call it was).
    assert [(c["id"], c["args"]) for c in given[2].invalid_tool_calls] == [("c1", arguments)]
    assert given[3].tool_call_id == "c1"


class LaggingClient(RecordingClient):
    """Remote, the answer with calls still being retried by its worker and the batch queued
    behind it: only the tool results' own tasks are stored."""

    def __init__(self, services: Container) -> None:
        super().__init__(services)
        self.held: list[list[str]] = []

    def save_message(self, **kwargs: Any) -> str:
        if kwargs.get("tool_calls"):
            self.held.append([kwargs["message_id"]])
            return str(kwargs["message_id"])
        return super().save_message(**kwargs)

    def save_messages(self, messages: list[dict[str, Any]]) -> None:
        if any(m.get("role") == "tool" for m in messages):
            self.held.append([m["message_id"] for m in messages])
            return
        super().save_messages(messages)


def test_remote_never_sends_tool_results_without_the_call_not_yet_stored(
        caplog: pytest.LogCaptureFixture) -> None:
    services = container()
    model = ToolCallingModel(inputs=[])
    with caplog.at_level(logging.WARNING, logger="conversation.langchain_middleware"):
        result = agent(LaggingClient(services), model).invoke(
            {"messages": [HumanMessage("Where are 4521 and 4522?")]}, CONFIG)
    assert result["messages"][-1].content == "Order 4521 is shipped. Order 4522 is in the warehouse."
    for given in model.inputs:
        assert_tool_messages_answer_calls(convert_to_openai_messages(given))
    # The second call fell back to the agent's own messages, which hold the call.
    assert [m.type for m in model.inputs[1]] == ["system", "human", "ai", "tool", "tool"]
    warnings = [r for r in caplog.records if r.name == "conversation.langchain_middleware"]
    assert len(warnings) == 1


def test_call_ids_reused_across_turns_keep_every_turn() -> None:
    services = container()
    bot = agent(services, SameIdModel(inputs=[]))
    bot.invoke({"messages": [HumanMessage("Where is 4521?")]}, CONFIG)
    bot.invoke({"messages": [HumanMessage("And 4522?")]}, CONFIG)
    assert [(m.role, m.content) for m in stored(services)] == [
        (Role.USER, "Where is 4521?"), (Role.ASSISTANT, ""),
        (Role.TOOL, "Order 4521 is shipped."), (Role.ASSISTANT, "Order 4521 is shipped."),
        (Role.USER, "And 4522?"), (Role.ASSISTANT, ""),
        (Role.TOOL, "Order 4522 is in the warehouse."),
        (Role.ASSISTANT, "Order 4521 is shipped. Order 4522 is in the warehouse."),
    ]


def test_histories_the_service_accepts_reach_the_model_as_the_apis_accept_them() -> None:
    """An unanswered call (a tool that raised), an orphan result, a user message between a
    call and its result, two results for one call: the model gets a valid context, unanswered
    calls dropped from their message (its text kept, or the message dropped if it has none)."""
    services = container()
    plant(services,
          {"role": "user", "content": "q1"},
          {"role": "assistant", "content": "", "tool_calls": [call("lost")]},  # never answered
          {"role": "user", "content": "q2"},
          {"role": "tool", "content": "orphan", "tool_call_id": "nobody"},
          {"role": "assistant", "content": "Let me look.", "tool_calls": [call("a"), call("b")]},
          {"role": "tool", "content": "ra", "tool_call_id": "a"},
          {"role": "tool", "content": "ra again", "tool_call_id": "a"},
          {"role": "assistant", "content": "", "tool_calls": [call("late")]},
          {"role": "user", "content": "q3"},
          {"role": "tool", "content": "too late", "tool_call_id": "late"},
          {"role": "assistant", "content": "done"})
    model = ToolCallingModel(inputs=[])
    agent(services, model).invoke({"messages": [HumanMessage("hello")]}, CONFIG)
    sent = convert_to_openai_messages(model.inputs[0])
    assert_tool_messages_answer_calls(sent)
    assert [(m["role"], m["content"], [c["id"] for c in m.get("tool_calls", [])])
            for m in sent[1:]] == [
        ("user", "q1", []), ("user", "q2", []), ("assistant", "Let me look.", ["a"]),
        ("tool", "ra", []), ("user", "q3", []), ("assistant", "done", []), ("user", "hello", []),
    ]


def test_a_tool_that_raised_does_not_spoil_the_next_runs() -> None:
    services = container()
    failures = iter([TimeoutError("order backend timed out")])

    @tool("lookup_order")
    def flaky_order(order: str) -> str:
        """The status of an order, by its number."""
        for failure in failures:
            raise failure
        return "shipped"

    model = ToolCallingModel(inputs=[])
    memory = ConversationMemory(services, tenant_id="acme", agent_id="bot", window="8k")
    bot = create_agent(model, tools=[flaky_order], system_prompt=SYSTEM, middleware=[memory])
    with pytest.raises(TimeoutError):
        bot.invoke({"messages": [HumanMessage("Where is 4521?")]}, CONFIG)
    bot.invoke({"messages": [HumanMessage("hello?")]}, CONFIG)
    sent = convert_to_openai_messages(model.inputs[-1])
    assert_tool_messages_answer_calls(sent)
    assert [m["role"] for m in sent] == ["system", "user", "user"]


def test_an_error_the_tool_node_returns_is_stored_as_the_result() -> None:
    services = container()

    @tool("lookup_order")
    def broken_order(order: str) -> str:
        """The status of an order, by its number."""
        raise ToolException("order backend down")

    broken_order.handle_tool_error = True
    memory = ConversationMemory(services, tenant_id="acme", agent_id="bot", window="8k")
    create_agent(ToolCallingModel(inputs=[]), tools=[broken_order], system_prompt=SYSTEM,
                 middleware=[memory]).invoke({"messages": [HumanMessage("Where is 4521?")]},
                                             CONFIG)
    history = stored(services)
    assert [m.role for m in history] == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    assert history[2].content == "order backend down"


def test_images_reach_the_model_and_their_text_is_stored() -> None:
    services = container()
    model = ToolCallingModel(inputs=[])
    question = HumanMessage(content=[
        {"type": "text", "text": "What does this label say?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}])
    agent(services, model).invoke({"messages": [question]}, CONFIG)
    assert model.inputs[0][-1].content == question.content
    assert [m.content for m in stored(services)][0] == "What does this label say?"


def test_a_thread_id_outside_the_identifier_rule_still_has_its_memory() -> None:
    services = container()
    model = ToolCallingModel(inputs=[])
    bot = agent(services, model)
    config = {"configurable": {"thread_id": "ann@example.com"}}
    bot.invoke({"messages": [HumanMessage("My name is Ann.")]}, config)
    bot.invoke({"messages": [HumanMessage("What is my name?")]}, config)
    assert [m.content for m in model.inputs[-1][1:]] == [
        "My name is Ann.", "You said: My name is Ann.", "What is my name?"]
    mapped = uuid.uuid5(_NAMESPACE, "thread/ann@example.com").hex
    assert len(stored(services, mapped)) == 4
