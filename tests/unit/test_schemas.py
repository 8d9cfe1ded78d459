"""Payload validation: every hostile input gets a clear reason, nothing crashes."""
from __future__ import annotations

import pytest

from tasks.base import InvalidPayload, validated
from tasks.schemas import (
    GetContextSchema,
    MigrateConversationSchema,
    SaveMessageSchema,
    SessionClosedSchema,
)
from tests.fakes import payload


def reasons(kwargs: dict, schema=None) -> dict:  # noqa: ANN001
    schema = schema or SaveMessageSchema(max_message_chars=100)
    with pytest.raises(InvalidPayload) as caught:
        validated(schema, kwargs)
    return caught.value.reasons


def test_a_valid_payload_loads_with_defaults() -> None:
    loaded = validated(SaveMessageSchema(max_message_chars=100), payload())
    assert loaded["role"] == "user" and loaded["metadata"] == {} and loaded["message_id"] is None


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("tenant_id", "acme:corp", "letters, digits"),
        ("session_id", "has space", "letters, digits"),
        ("agent_id", "x" * 10_000, "letters, digits"),
        ("tenant_id", 42, "Not a valid string"),
        ("role", "wizard", "Must be one of"),
        ("content", "x" * 101, "at most 100"),
        ("content", "bad \ud800 surrogate", "UTF-8"),
        ("content", None, "Field may not be null"),
        ("metadata", [1, 2], "Not a valid mapping"),
        ("created_at", "yesterday", "ISO-8601"),
        # Issue 15: what storage could not take, refused here with a reason.
        ("tenant_id", "acme\n", "letters, digits"),
        ("message_id", "m-1\n", "letters, digits"),
        ("created_at", "0001-01-01T00:00:00+01:00", "out of range once converted to UTC"),
        ("created_at", "9999-12-31T23:59:59-01:00", "out of range once converted to UTC"),
        ("created_at", "9999-12-31T00:00:00Z", "out of range"),
        ("metadata", {"ok": 1, "bad\x00key": "v"}, "has a key that contains a NUL"),
        ("metadata", {"a": [{"b": "nested\x00value"}]}, "a[0].b contains a NUL"),
        ("metadata", {"a": {"\ud800": 1}}, "lone surrogate"),
        ("metadata", {"a": float("nan")}, "NaN and Infinity are not JSON"),
        ("metadata", {"a": float("-inf")}, "NaN and Infinity are not JSON"),
        ("metadata", {"a": 2**64}, "beyond 64 bits"),
        # A satisfaction off the scale (1e308 summed to inf in the daily statistics).
        ("metadata", {"satisfaction": 1e308}, "satisfaction must be a number from -100 to 100"),
        ("metadata", {"satisfaction": -101}, "satisfaction must be a number from -100 to 100"),
        ("name", "bob\x00", "NUL"),
        ("content", "text with \x00 in it", "NUL"),
    ],
)
def test_each_bad_field_is_named_with_its_reason(field: str, value: object, needle: str) -> None:
    found = reasons(payload(**{field: value}))
    assert list(found) == [field]
    assert needle in " ".join(map(str, found[field]))


def test_created_at_is_converted_to_the_utc_form_it_is_stored_in() -> None:
    schema = SaveMessageSchema(max_message_chars=100)
    assert validated(schema, payload(created_at="2024-01-01T05:00:00+02:00"))["created_at"] == (
        "2024-01-01T03:00:00.000000Z")
    assert validated(schema, payload(created_at="0001-01-01T00:00:00Z"))["created_at"] == (
        "0001-01-01T00:00:00.000000Z")


def test_an_unknown_field_named_with_a_nul_is_refused_without_repeating_it() -> None:
    found = reasons(payload(**{"x\x00": 1}))
    assert list(found) == ["_schema"] and "\x00" not in str(found)


def test_missing_fields_and_unknown_fields_are_reported() -> None:
    found = reasons({"tenant_id": "acme", "colour": "blue"})
    assert {"session_id", "agent_id", "role", "content", "colour"} <= set(found)


def test_metadata_nested_1000_deep_is_refused_without_recursion_error() -> None:
    deep: dict = {}
    node = deep
    for _ in range(1000):
        node["a"] = {}
        node = node["a"]
    found = reasons(payload(metadata=deep))
    assert "nested deeper" in str(found["metadata"])


def test_get_context_needs_a_target_and_a_known_window() -> None:
    assert "window" in reasons(
        {"tenant_id": "acme", "session_id": "s", "window": "1m"}, GetContextSchema())
    assert "required" in str(reasons({"tenant_id": "acme"}, GetContextSchema())["conversation_id"])


def test_migration_generation_must_be_a_non_negative_integer() -> None:
    found = reasons({"conversation_id": "c1", "generation": "1"}, MigrateConversationSchema())
    assert "generation" in found



def test_a_close_time_storage_cannot_hold_is_refused_too() -> None:
    close = {"tenant_id": "acme", "session_id": "s", "closed_at": "0001-01-01T00:00:00+01:00"}
    found = reasons(close, SessionClosedSchema())
    assert "out of range" in str(found["closed_at"])


@pytest.mark.parametrize("score", [4, 4.5, 0, -100, 100, "good", None, True])
def test_a_satisfaction_on_the_scale_or_not_a_number_is_accepted(score: object) -> None:
    """A number is a rating on the documented scale; anything else is not a rating (ignored
    by the statistics, as the README says), and accepted as any metadata is."""
    loaded = validated(SaveMessageSchema(max_message_chars=100),
                       payload(metadata={"satisfaction": score}))
    assert loaded["metadata"] == {"satisfaction": score}


def _with_arguments(arguments: str) -> dict:
    return payload(role="assistant", content="", tool_calls=[
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}])


@pytest.mark.parametrize("arguments", [
    '{"a": ' * 63 + "[1]" + "}" * 63,  # 64 levels: the limit
    '{"text": "' + "[{" * 500 + '"}',  # brackets inside a string are text, not nesting
    '{"text": "a \\" quote, then [[[[", "b": [1, {"c": 2}]}',
    '{"unterminated": "' + "[" * 100,  # not JSON: stored as it is (an invalid call)
    "not json at all",
])
def test_tool_call_arguments_up_to_64_levels_deep_are_accepted(arguments: str) -> None:
    loaded = validated(SaveMessageSchema(max_message_chars=100), _with_arguments(arguments))
    assert loaded["tool_calls"][0]["function"]["arguments"] == arguments


@pytest.mark.parametrize("arguments", [
    '{"a": ' * 64 + "[1]" + "}" * 64,
    "[" * 3000 + "]" * 3000,
    '{"s": "]]]]", "deep": ' + "[" * 65 + "]" * 65 + "}",
])
def test_tool_call_arguments_nested_deeper_are_refused_with_the_limit(arguments: str) -> None:
    found = reasons(_with_arguments(arguments))
    assert list(found) == ["tool_calls"]
    assert "nested deeper than 64 levels" in str(found["tool_calls"])
