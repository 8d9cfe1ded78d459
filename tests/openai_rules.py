"""OpenAI's rule for tool messages, checked strictly (the API's own check, without the API)."""
from __future__ import annotations

from typing import Any


def assert_tool_messages_answer_calls(messages: list[dict[str, Any]]) -> None:
    """Every `tool` message answers a call of the assistant message just before it (only
    other tool messages between them), each call is answered once, and none is left
    unanswered before the next non-tool message: what Chat Completions refuses otherwise
    ("messages with role 'tool' must be a response to a preceding message with 'tool_calls'")."""
    pending: set[str] = set()
    in_results = False
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            assert in_results, f"message {index}: a tool message not after an assistant's calls"
            assert call_id in pending, f"message {index}: {call_id!r} answers no pending call"
            pending.discard(call_id)
            continue
        assert not pending, f"message {index}: calls {sorted(pending)} were never answered"
        in_results = False
        calls = message.get("tool_calls") or []
        if role == "assistant" and calls:
            ids = [call["id"] for call in calls]
            assert len(set(ids)) == len(ids), f"message {index}: repeated call ids"
            for call in calls:
                assert call["type"] == "function" and isinstance(
                    call["function"]["arguments"], str), f"message {index}: {call!r}"
            pending = set(ids)
            in_results = True
        else:
            assert not calls, f"message {index}: tool calls on a {role} message"
    assert not pending, f"calls {sorted(pending)} were never answered"
