"""The save schemas' plain path (`load_plain`) against marshmallow's `load`, the reference: on
generated payloads, whatever the plain path answers is exactly what `load` returns, and it
answers for every plain message `load` accepts (no tool calls), so the saves that take it keep
the same acceptance, and every refusal keeps marshmallow's reasons."""
from __future__ import annotations

import string
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from tasks.schemas import SaveMessageSchema, SaveMessagesSchema
from tests.integration.test_payload_fuzz import JSON, TIMESTAMPS, save_payloads

SCHEMA = SaveMessageSchema(max_message_chars=30)
IDENTIFIERS = st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=130)


def reference(schema: SaveMessageSchema | SaveMessagesSchema, payload: Any) -> Any:
    try:
        return dict(schema.load(payload))
    except ValidationError:
        return None


@st.composite
def plain_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Messages without tool calls, most fields near their limits (long identifiers and
    names, content around max_message_chars, ratings, timestamps at the range's edges)."""
    role = draw(st.sampled_from(["system", "user", "assistant", "tool"]))
    payload: dict[str, Any] = {
        "tenant_id": draw(IDENTIFIERS), "session_id": draw(IDENTIFIERS),
        "agent_id": draw(IDENTIFIERS), "role": role,
        "content": draw(st.text(max_size=32)),
    }
    optional = {
        "message_id": st.one_of(st.none(), IDENTIFIERS),
        "conversation_id": st.one_of(st.none(), IDENTIFIERS),
        "created_at": st.one_of(st.none(), TIMESTAMPS),
        "metadata": st.one_of(
            st.dictionaries(st.text(max_size=4), JSON, max_size=3),
            st.fixed_dictionaries({"satisfaction": st.one_of(
                st.integers(-2, 7), st.floats(), st.booleans(), st.text(max_size=2))}),
            st.none()),
        "name": st.one_of(st.none(), st.text(max_size=130)),
        "tool_calls": st.one_of(st.none(), st.just([])),
        "tool_call_id": st.one_of(st.none(), st.text(max_size=130)),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            payload[key] = draw(strategy)
    return payload


def assert_same_answer(payload: Any) -> Any:
    plain, loaded = SCHEMA.load_plain(payload), reference(SCHEMA, payload)
    if plain is not None:
        assert loaded is not None, payload
        assert plain == loaded, payload
    return plain, loaded


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(plain_payloads(), save_payloads()))
def test_plain_path_answers_as_marshmallow_does(payload: dict[str, Any]) -> None:
    plain, loaded = assert_same_answer(payload)
    event("plain" if plain is not None else "refused" if loaded is None else "marshmallow")
    if loaded is not None and not loaded["tool_calls"] and payload.get("tool_calls") != []:
        # Every plain message marshmallow accepts takes the plain path: it is the fast one.
        assert plain is not None, payload


def test_a_typical_message_takes_the_plain_path() -> None:
    payload = {"tenant_id": "acme", "session_id": "s1", "agent_id": "bot", "role": "user",
               "content": "hello", "message_id": "m1",
               "created_at": "2024-06-01T12:00:00+02:00", "metadata": {"satisfaction": 4}}
    plain, loaded = assert_same_answer(payload)
    assert plain == loaded
    assert plain["created_at"] == "2024-06-01T10:00:00.000000Z"
    assert plain["metadata"] is not payload["metadata"]


@settings(max_examples=300, deadline=None)
@given(batch=st.one_of(
    st.lists(st.one_of(st.fixed_dictionaries({}), JSON), max_size=4),
    st.lists(st.just({"a": 1}), min_size=999, max_size=1002), JSON))
def test_plain_batch_answers_as_marshmallow_does(batch: Any) -> None:
    for payload in ({"messages": batch}, {"messages": batch, "extra": 1}, batch):
        schema = SaveMessagesSchema()
        plain = schema.load_plain(payload)
        if plain is not None:
            assert plain == reference(schema, payload)
