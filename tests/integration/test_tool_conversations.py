"""A tool-using conversation through a real worker (issue 17): 1,500 messages of turns with
parallel calls; the 8k and 32k contexts are what LangChain's trim_messages keeps, with the
contract's counter, from Redis, after migration from PostgreSQL, and during a Redis outage.
And read-your-writes: save-then-context pairs with wait_for_message_id."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import trim_messages

from config.settings import Settings
from conversation.bootstrap import Container
from conversation.client import ConversationClient
from conversation.domain.messages import Message, Role, chat_message
from conversation.embedded import EmbeddedRedis
from conversation.langchain import to_langchain
from tests.contract_tokens import lc_counter
from tests.openai_rules import assert_tool_messages_answer_calls
from tests.workers import producer, running_worker, wait_until

pytestmark = pytest.mark.integration

BUDGETS = {"8k": 6000, "32k": 28000}
WORDS = ("order parcel warehouse invoice refund courier weather city forecast status "
         "delivered shipped pending address customer ticket").split()


def words(seed: int, count: int) -> str:
    return " ".join(WORDS[(seed * 7 + k * 3) % len(WORDS)] for k in range(count))


def tool_conversation(tenant: str, session: str, size: int = 1500) -> list[dict[str, Any]]:
    """save_message payloads: a system message, then turns of user -> assistant with two
    parallel calls (no content) -> the two results (second call's first) -> the answer."""
    payloads: list[dict[str, Any]] = []

    def add(role: str, content: str, **extra: Any) -> None:
        n = len(payloads)
        payloads.append({
            "tenant_id": tenant, "session_id": session, "agent_id": "bot", "role": role,
            "content": content, "message_id": f"{session}-{n}",
            "created_at": f"2026-11-24T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
            **extra,
        })

    add("system", "You are a support agent with tools to look orders and weather up.")
    turn = 0
    while len(payloads) < size:
        turn += 1
        steps = [
            ("user", words(turn, 12 + turn % 9), {}),
            ("assistant", "", {"tool_calls": [
                {"id": f"call_{turn}_a", "type": "function", "function": {
                    "name": "lookup_order",
                    "arguments": json.dumps({"order": str(4000 + turn)}, ensure_ascii=False)}},
                {"id": f"call_{turn}_b", "type": "function", "function": {
                    "name": "weather_in",
                    "arguments": json.dumps({"city": "Zürich", "days": turn % 5},
                                            ensure_ascii=False)}},
            ]}),
            ("tool", words(turn + 1, 20 + turn % 13), {"tool_call_id": f"call_{turn}_b"}),
            ("tool", words(turn + 2, 15 + turn % 7), {"tool_call_id": f"call_{turn}_a"}),
            ("assistant", words(turn + 3, 25 + turn % 11), {}),
        ]
        for role, content, extra in steps[: size - len(payloads)]:
            add(role, content, **extra)
    return payloads


def as_message(payload: dict[str, Any]) -> Message:
    return Message(payload["message_id"], Role(payload["role"]), payload["content"],
                   payload["created_at"], 0, "", tool_calls=payload.get("tool_calls"),
                   tool_call_id=payload.get("tool_call_id"))


def expected_context(payloads: list[dict[str, Any]], budget: int) -> tuple[list[dict], int]:
    """trim_messages on the conversation as LangChain messages, with the contract's counter."""
    history = [as_message(p) for p in payloads]
    kept = trim_messages([to_langchain(m) for m in history], max_tokens=budget,
                         token_counter=lc_counter, strategy="last", include_system=True,
                         start_on="human", allow_partial=False)
    by_id = {m.id: m for m in history}
    messages = [chat_message(str(by_id[k.id].role), by_id[k.id].content, None,
                             by_id[k.id].tool_calls, by_id[k.id].tool_call_id) for k in kept]
    return messages, lc_counter(kept)


@pytest.fixture
def own_redis(test_var_dir: Path) -> Iterator[EmbeddedRedis]:
    """The active store of this test's own, so that it can be stopped (the broker stays)."""
    server = EmbeddedRedis(test_var_dir / f"tools-redis-{uuid.uuid4().hex[:6]}",
                           persist=False).start()
    yield server
    server.stop()


@pytest.fixture
def service(settings: Settings, own_redis: EmbeddedRedis,
            test_var_dir: Path) -> Iterator[tuple[Container, Any]]:
    settings = replace(settings, redis_url=f"{own_redis.url}/0")
    container = Container(settings)
    container.breaker.retry_after = 0.2
    app = producer(settings)
    with running_worker(settings, test_var_dir / f"tools-{uuid.uuid4().hex[:6]}.log",
                        concurrency=2):
        yield container, app
    app.close()
    container.close()


def context(app: Any, **kwargs: Any) -> dict[str, Any]:
    return app.send_task("conversation.get_context", kwargs=kwargs,
                         queue="conversation.context").get(timeout=30)


def send(app: Any, payloads: list[dict[str, Any]]) -> None:
    for start in range(0, len(payloads), 1000):
        app.send_task("conversation.save_messages",
                      kwargs={"messages": payloads[start : start + 1000]},
                      queue="conversation.save")


def assert_contexts_equal_trim_messages(app: Any, tenant: str, conversation_id: str,
                                        payloads: list[dict[str, Any]]) -> None:
    for window, budget in BUDGETS.items():
        got = context(app, tenant_id=tenant, conversation_id=conversation_id, window=window)
        assert "error" not in got, got.get("error")
        messages, tokens = expected_context(payloads, budget)
        assert got["total_messages"] == len(payloads)
        assert got["truncated"] is (len(messages) < len(payloads))
        assert got["messages"] == messages, window
        assert got["tokens"] == tokens, window
        assert_tool_messages_answer_calls(got["messages"][1:])  # after the system message


def test_a_tool_using_conversation_in_redis_after_migration_and_in_an_outage(
    service: tuple[Container, Any], own_redis: EmbeddedRedis,
) -> None:
    container, app = service
    tenant = f"tools-{container.settings.redis_key_prefix.strip(':')}"
    payloads = tool_conversation(tenant, "big-1")
    send(app, payloads)
    conversation_id = wait_until(
        lambda: (cid := container.active_store.session_conversation(tenant, "big-1"))
        and container.active_store.message_count(cid) == len(payloads) and cid,
        timeout=60, what="1,500 messages in Redis")
    assert_contexts_equal_trim_messages(app, tenant, conversation_id, payloads)

    app.send_task("conversation.session_closed", kwargs={"tenant_id": tenant,
                                                         "session_id": "big-1"},
                  queue="conversation.sessions")
    wait_until(lambda: container.active_store.get_conversation(conversation_id) is None
               and container.repository.get_conversation(conversation_id) is not None,
               timeout=60, what="the migration")
    assert len(container.repository.messages(conversation_id)) == len(payloads)
    assert_contexts_equal_trim_messages(app, tenant, conversation_id, payloads)

    own_redis.stop()  # an outage: saves and reads fall back to PostgreSQL
    assert_contexts_equal_trim_messages(app, tenant, conversation_id, payloads)
    # Saved during the outage, one PostgreSQL transaction a message: fewer, so the test stays
    # quick on a database other tests filled (an 8k window still cuts it).
    during = tool_conversation(tenant, "big-2", size=300)
    send(app, during)
    outage_id = wait_until(
        lambda: (cid := container.repository.latest_conversation_for_session(tenant, "big-2"))
        and len(container.repository.messages(cid)) == len(during) and cid,
        timeout=120, interval=0.5, what="the messages saved during the outage")
    assert_contexts_equal_trim_messages(app, tenant, outage_id, during)

    # Read-your-writes during the outage too (back-off polling of PostgreSQL).
    app.send_task("conversation.save_message", queue="conversation.save", kwargs={
        "tenant_id": tenant, "session_id": "big-2", "agent_id": "bot", "role": "user",
        "content": "one more question", "message_id": "big-2-late"})
    got = context(app, tenant_id=tenant, session_id="big-2", window="8k",
                  wait_for_message_id="big-2-late")
    assert got["waited_for"] == "found"
    assert got["messages"][-1] == {"role": "user", "content": "one more question"}


def test_save_then_context_pairs_read_their_own_writes(service: tuple[Container, Any]) -> None:
    container, app = service
    tenant = f"ryw-{container.settings.redis_key_prefix.strip(':')}"
    session = f"ryw-{uuid.uuid4().hex[:6]}"  # the first pair is the session's first message
    for i in range(20):
        app.send_task("conversation.save_message", queue="conversation.save", kwargs={
            "tenant_id": tenant, "session_id": session, "agent_id": "bot",
            "role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}",
            "message_id": f"{session}-{i}"})
        got = context(app, tenant_id=tenant, session_id=session, window="8k",
                      wait_for_message_id=f"{session}-{i}")
        assert got["waited_for"] == "found", got
        assert got["messages"][-1]["content"] == f"message {i}"
        assert got["total_messages"] == i + 1

    # Answered without it (the bound of the wait, 2 s, is the service's own deadline, checked
    # on a simulated clock in tests/unit/test_wait_for_message.py: no timing through a broker).
    got = context(app, tenant_id=tenant, session_id=session, window="8k",
                  wait_for_message_id="never-sent")
    assert got["waited_for"] == "missing"
    assert got["messages"][-1]["content"] == "message 19"
    assert got["total_messages"] == 20


def test_the_readme_tool_turn_with_the_client(service: tuple[Container, Any]) -> None:
    """README's tool-using turn, as an upstream service runs it with ConversationClient (the
    model's reply stands in for OpenAI's)."""
    container, app = service
    client = ConversationClient(app)
    turn = {"tenant_id": f"cli-{container.settings.redis_key_prefix.strip(':')}",
            "session_id": "ws-42", "agent_id": "support-bot"}
    asked = client.save_message(**turn, role="user", content="Where are 4521 and 4522?")
    context = client.get_context(tenant_id=turn["tenant_id"], session_id="ws-42",
                                 model="gpt-4o", wait_for_message_id=asked)
    assert context["waited_for"] == "found"
    assert context["messages"] == [{"role": "user", "content": "Where are 4521 and 4522?"}]
    reply_calls = [{"id": f"call_{order}", "type": "function", "function": {
        "name": "lookup_order", "arguments": json.dumps({"order": order})}}
        for order in ("4521", "4522")]
    calls = [{**turn, "role": "assistant", "content": "", "tool_calls": reply_calls}]
    calls += [{**turn, "role": "tool", "tool_call_id": call["id"],
               "content": f"{json.loads(call['function']['arguments'])['order']} shipped"}
              for call in reply_calls]
    calls[-1]["message_id"] = last = uuid.uuid4().hex
    client.save_messages(calls)
    context = client.get_context(tenant_id=turn["tenant_id"], session_id="ws-42",
                                 model="gpt-4o", wait_for_message_id=last)
    assert context["waited_for"] == "found"
    assert [m["role"] for m in context["messages"]] == ["user", "assistant", "tool", "tool"]
    assert context["messages"][1]["tool_calls"] == reply_calls
    assert_tool_messages_answer_calls(context["messages"])
