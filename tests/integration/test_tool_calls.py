"""Tool calls on real Redis and PostgreSQL (issue 17): stored in both tiers, carried by
migration, returned by every reader, erased with their message."""
from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text

from api import create_app
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role
from conversation.queries.export import as_csv, export_records
from conversation.langchain import ConversationChatHistory
from conversation.services.migration import ConversationMigrator, MigrationStatus
from tests.openai_rules import assert_tool_messages_answer_calls

pytestmark = pytest.mark.integration

CALLS = [
    {"id": "call_a", "type": "function",
     "function": {"name": "lookup_order", "arguments": '{"order": "4521"}'}},
    {"id": "call_b", "type": "function",
     "function": {"name": "weather_in", "arguments": '{"city": "Zürich"}'}},
]


def tool_turn(container: Container, tenant: str, session: str) -> str:
    """user -> assistant with two parallel calls (no content) -> both results -> answer."""
    def save(message_id: str, role: Role, content: str, second: int, **extra: object) -> str:
        return container.saver.save(NewMessage(
            tenant_id=tenant, session_id=session, agent_id="bot", role=role, content=content,
            message_id=message_id, created_at=f"2026-11-24T10:00:0{second}Z",
            **extra,  # type: ignore[arg-type]
        )).conversation_id

    conversation_id = save("m1", Role.USER, "Where is 4521, and the weather?", 1)
    save("m2", Role.ASSISTANT, "", 2, tool_calls=CALLS)
    save("m3", Role.TOOL, "shipped", 3, tool_call_id="call_a")
    save("m4", Role.TOOL, "sunny", 4, tool_call_id="call_b")
    save("m5", Role.ASSISTANT, "It shipped; sunny in Zürich.", 5)
    return conversation_id


EXPECTED = [
    {"role": "user", "content": "Where is 4521, and the weather?"},
    {"role": "assistant", "content": "", "tool_calls": CALLS},
    {"role": "tool", "content": "shipped", "tool_call_id": "call_a"},
    {"role": "tool", "content": "sunny", "tool_call_id": "call_b"},
    {"role": "assistant", "content": "It shipped; sunny in Zürich."},
]


def readers(container: Container, tenant: str, session: str, conversation_id: str) -> None:
    """Every reader gives the calls and ids back."""
    context = container.context_builder.get_context(
        tenant_id=tenant, conversation_id=conversation_id, window="8k")
    assert context["messages"] == EXPECTED
    assert_tool_messages_answer_calls(context["messages"])

    client = create_app(container=container).test_client()
    key = container.api_keys.create(tenant)
    full = client.get(f"/api/conversations/{conversation_id}/full",
                      headers={"Authorization": f"Bearer {key}"})
    assert full.status_code == 200
    got = full.json["messages"]
    assert got[1]["tool_calls"] == CALLS and "tool_call_id" not in got[1]
    assert [m.get("tool_call_id") for m in got] == [None, None, "call_a", "call_b", None]

    records = [r for r in export_records(container.engine, container.tiers, tenant)
               if r["conversation_id"] == conversation_id]
    assert records[1]["tool_calls"] == CALLS
    assert [r["tool_call_id"] for r in records] == [None, None, "call_a", "call_b", None]
    rows = list(csv.DictReader(io.StringIO(b"".join(as_csv(iter(records))).decode())))
    assert json.loads(rows[1]["tool_calls"]) == CALLS and rows[0]["tool_calls"] == ""

    history = ConversationChatHistory(container, tenant_id=tenant, session_id=session,
                                      agent_id="bot", conversation_id=conversation_id).messages
    assert [(c["id"], c["args"]) for c in history[1].tool_calls] == [
        ("call_a", {"order": "4521"}), ("call_b", {"city": "Zürich"})]
    assert [getattr(m, "tool_call_id", None) for m in history][2:4] == ["call_a", "call_b"]


def test_tool_calls_in_both_tiers_and_erased_with_the_conversation(container: Container) -> None:
    tenant = f"tools-{container.settings.redis_key_prefix.strip(':')}"
    conversation_id = tool_turn(container, tenant, "s-1")
    readers(container, tenant, "s-1", conversation_id)  # from Redis

    closed = container.active_store.close_session(tenant, "s-1", "2026-11-24T12:00:00Z")
    assert closed is not None
    outcome = ConversationMigrator(container.active_store, container.repository).migrate(
        closed.conversation_id, closed.generation)
    assert outcome.status is MigrationStatus.MIGRATED
    assert container.active_store.get_conversation(conversation_id) is None
    readers(container, tenant, "s-1", conversation_id)  # from PostgreSQL (COPY wrote them)

    # The migrated conversation takes a late tool message (append path, not COPY).
    container.saver.save(NewMessage(
        tenant_id=tenant, session_id="s-1", agent_id="bot", role=Role.ASSISTANT, content="",
        message_id="m6", conversation_id=conversation_id, created_at="2026-11-24T10:00:06Z",
        tool_calls=[{"id": "call_c", "type": "function",
                     "function": {"name": "f", "arguments": "{}"}}]))
    assert container.repository.messages(conversation_id)[-1].tool_calls[0]["id"] == "call_c"

    assert container.eraser.erase_conversation(conversation_id) is True
    with container.engine.connect() as connection:
        left = connection.execute(text(
            "SELECT count(*) FROM messages WHERE conversation_id = :c "
            "AND (tool_calls IS NOT NULL OR tool_call_id IS NOT NULL)"),
            {"c": conversation_id}).scalar()
    assert left == 0


def test_tool_calls_saved_during_a_redis_outage_come_back(container: Container) -> None:
    """The PostgreSQL-direct path (save_direct) stores them as well."""
    tenant = f"toolsout-{container.settings.redis_key_prefix.strip(':')}"
    container.breaker.failed(ConnectionError("test: Redis is down"))
    container.breaker._retry_at = float("inf")  # noqa: SLF001  (stays down for the test)
    try:
        conversation_id = tool_turn(container, tenant, "s-out")
        assert container.repository.get_conversation(conversation_id) is not None
        context = container.context_builder.get_context(
            tenant_id=tenant, session_id="s-out", window="8k")
        assert context["messages"] == EXPECTED
    finally:
        container.breaker._retry_at = 0  # noqa: SLF001
