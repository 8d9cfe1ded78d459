"""The summary's input folds tool traffic: a call and its result in one readable line."""
from __future__ import annotations

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
