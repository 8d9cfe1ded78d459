"""The summary's input folds tool traffic: a call and its result in one readable line."""
from __future__ import annotations

import json

from conversation.adapters.summariser import transcript
from conversation.domain.messages import Message, Role


def message(i: int, role: Role, content: str, **extra: object) -> Message:
    return Message(f"m{i}", role, content, f"2026-01-01T00:00:0{i}.000000Z", 5, "words",
                   **extra)  # type: ignore[arg-type]


def test_a_call_and_its_result_are_one_line() -> None:
    calls = [
        {"id": "a", "type": "function",
         "function": {"name": "lookup_order", "arguments": '{"order": 4521}'}},
        {"id": "b", "type": "function",
         "function": {"name": "weather_in", "arguments": '{"city": "Zürich", "days": [1, 2]}'}},
    ]
    text = transcript([
        message(1, Role.USER, "Where is my order?"),
        message(2, Role.ASSISTANT, "", tool_calls=calls),
        message(3, Role.TOOL, "sunny\n and warm", tool_call_id="b"),
        message(4, Role.TOOL, '{"status": "shipped"}', tool_call_id="a"),
        message(5, Role.TOOL, "late answer", tool_call_id="zz"),
        message(6, Role.ASSISTANT, "It shipped."),
    ])
    assert text.splitlines() == [
        "user: Where is my order?",
        'assistant called lookup_order(order=4521) → {"status": "shipped"}',
        "assistant called weather_in(city=Zürich, days=[1,2]) → sunny and warm",
        "tool: late answer",
        "assistant: It shipped.",
    ]


def test_arguments_that_are_not_an_object_and_long_results_stay_short() -> None:
    calls = [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "not json"}}]
    text = transcript([message(1, Role.ASSISTANT, "", tool_calls=calls),
                       message(2, Role.TOOL, "x" * 1000, tool_call_id="a")])
    assert text.startswith("assistant called f(not json) → xxx")
    assert len(text) < 220 and text.endswith("…")


def test_a_reused_call_id_pairs_each_result_with_the_nearest_call_before_it() -> None:
    """Some models number their calls per turn ("0", "1", ...): the same id comes back each
    turn. A result belongs to the latest call with its id before it, never to a later one."""
    def call(order: str) -> list[dict[str, object]]:
        return [{"id": "0", "type": "function",
                 "function": {"name": "lookup_order", "arguments": json.dumps({"order": order})}}]

    text = transcript([
        message(1, Role.USER, "Where is 4521?"),
        message(2, Role.ASSISTANT, "", tool_calls=call("4521")),
        message(3, Role.TOOL, "4521 shipped", tool_call_id="0"),
        message(4, Role.USER, "And 4522?"),
        message(5, Role.ASSISTANT, "", tool_calls=call("4522")),
        message(6, Role.TOOL, "4522 lost", tool_call_id="0"),
        message(7, Role.TOOL, "a second answer to the same call", tool_call_id="0"),
    ])
    assert text.splitlines() == [
        "user: Where is 4521?",
        "assistant called lookup_order(order=4521) → 4521 shipped",
        "user: And 4522?",
        "assistant called lookup_order(order=4522) → 4522 lost",
        "tool: a second answer to the same call",
    ]


def test_a_result_before_any_call_with_its_id_stays_its_own_line() -> None:
    calls = [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    text = transcript([message(1, Role.TOOL, "early", tool_call_id="a"),
                       message(2, Role.ASSISTANT, "", tool_calls=calls)])
    assert text.splitlines() == ["tool: early", "assistant called f()"]


def test_arguments_nested_too_deep_to_parse_are_shown_as_text() -> None:
    """Stored before the save schema capped the nesting: json.loads raises RecursionError on
    them, and the summarise task must still read the history."""
    deep = "[" * 3000 + "]" * 3000
    calls = [{"id": "a", "type": "function", "function": {"name": "f", "arguments": deep}}]
    text = transcript([message(1, Role.ASSISTANT, "", tool_calls=calls)])
    assert text.startswith("assistant called f([[[[") and text.endswith("…)")
