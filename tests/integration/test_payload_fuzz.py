"""Generated payloads thrown at both save schemas: what validation accepts, both tiers store
(built by the saver's own code, encoded as Redis stores it, inserted into PostgreSQL as both
the direct path and the migration's COPY write it); what it refuses, it says why."""
from __future__ import annotations

import json
import string
import uuid
from dataclasses import replace
from datetime import UTC, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, text

from conversation.adapters.redis.codec import _dumps
from conversation.adapters.postgres import message_row
from conversation.adapters.postgres.schema import messages
from conversation.bootstrap import Container
from conversation.domain.messages import Message, NewMessage, Role, utc_timestamp
from tasks.base import InvalidPayload, validated
from tasks.conversation_tasks import _new_message
from tasks.schemas import SaveMessageSchema, SaveMessagesSchema

pytestmark = pytest.mark.integration

ANY_CHARACTER = st.characters(codec=None, categories=None)  # NUL and lone surrogates too
ANY_TEXT = st.text(ANY_CHARACTER, max_size=12)
IDENTIFIER_TEXT = st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=12)
BAD_IDENTIFIERS = st.one_of(
    IDENTIFIER_TEXT.map(lambda s: s + "\n"), ANY_TEXT, st.integers(), st.none(),
)
EDGE_TIMESTAMPS = st.sampled_from([
    "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "0001-01-01T00:59:59-01:00",
    "9999-12-31T23:59:59-01:00", "9999-12-30T23:59:59Z", "9999-12-31T00:00:00Z",
    "2024-02-30T00:00:00Z", "2024-06-01T12:00:00", "2024-06-01", "yesterday", "",
])
OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
TIMESTAMPS = st.one_of(
    EDGE_TIMESTAMPS, st.datetimes(timezones=st.one_of(st.none(), OFFSETS, st.just(UTC)))
    .map(lambda moment: moment.isoformat()), ANY_TEXT,
)
JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), ANY_TEXT,
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(ANY_TEXT, children, max_size=3)),
    max_leaves=10,
)


@st.composite
def tool_calls(draw: st.DrawFn) -> Any:
    """Chat Completions' tool calls, one part in sixteen hostile (a NUL or a surrogate in any
    string, arguments that are not a string, a missing or extra key, a wrong type)."""
    def part(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        return draw(bad if draw(st.integers(0, 15)) == 0 else good)

    def call() -> Any:
        arguments = part(
            st.one_of(st.text(max_size=20),
                      JSON.map(lambda v: json.dumps(v, ensure_ascii=False))),
            st.one_of(ANY_TEXT, JSON),
        )
        function = {"name": part(st.text(min_size=1, max_size=12), ANY_TEXT),
                    "arguments": arguments}
        made = {"id": part(IDENTIFIER_TEXT, st.one_of(ANY_TEXT, st.integers())),
                "type": part(st.just("function"), st.sampled_from(["code", "", None])),
                "function": function}
        if draw(st.integers(0, 15)) == 0:
            made.pop(draw(st.sampled_from(sorted(made))))
        if draw(st.integers(0, 15)) == 0:
            made[draw(ANY_TEXT)] = draw(JSON)
        return made

    return part(st.just([call() for _ in range(draw(st.integers(0, 3)))]),
                st.one_of(JSON, st.just([call()] * 2)))


@st.composite
def save_payloads(draw: st.DrawFn) -> dict[str, Any]:
    # Mostly well-formed fields, one in eight hostile: most payloads then test the storage
    # side (accepted) as much as the reasons (refused).
    def field(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        return draw(bad if draw(st.integers(0, 7)) == 0 else good)

    identifier = lambda: field(IDENTIFIER_TEXT, BAD_IDENTIFIERS)  # noqa: E731
    payload: dict[str, Any] = {
        "tenant_id": identifier(), "session_id": identifier(), "agent_id": identifier(),
        "role": field(st.sampled_from(["system", "user", "assistant", "tool"]),
                      st.sampled_from(["wizard", "", None])),
        "content": field(st.text(max_size=40), st.one_of(ANY_TEXT, st.integers())),
    }
    optional = {
        "message_id": st.builds(identifier), "conversation_id": st.builds(identifier),
        "created_at": TIMESTAMPS,
        "metadata": st.one_of(st.dictionaries(ANY_TEXT, JSON, max_size=4), JSON),
        "name": st.one_of(st.none(), ANY_TEXT), "x\x00": st.integers(),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()) and (key != "x\x00" or draw(st.booleans())):
            payload[key] = draw(strategy)
    # Tool calls mostly where they belong (an assistant's), the call id mostly on a tool
    # message: the storage side of both gets tested, not only the role rules.
    shape = draw(st.integers(0, 5))
    if shape <= 1:
        payload["tool_calls"] = draw(tool_calls())
        if shape == 0:  # else on whatever role was drawn: mostly refused
            payload["role"] = "assistant"
    elif shape <= 3:
        payload["tool_call_id"] = field(IDENTIFIER_TEXT, st.one_of(ANY_TEXT, st.integers()))
        if shape == 2:
            payload["role"] = "tool"
    return payload


def assert_a_reason(schema: Any, payload: Any) -> None:
    with pytest.raises(InvalidPayload) as refused:
        validated(schema, payload)
    reasons = refused.value.reasons

    def texts(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [t for v in value.values() for t in texts(v)]
        if isinstance(value, list):
            return [t for v in value for t in texts(v)]
        return [value]

    assert reasons and all(isinstance(t, str) and t.strip() for t in texts(reasons)), reasons
    # A reason is recorded in jsonb: it never carries what jsonb refuses (NUL, surrogates).
    recorded = json.dumps(reasons, ensure_ascii=False)  # as SQLAlchemy writes them to jsonb
    assert "\\u0000" not in recorded
    recorded.encode("utf-8")  # no lone surrogate


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: jsonb keeps a number's decimal text, so 4.45e16 comes back as
    the integer 44502901848646380, the same JSON number (it reads back as the same float)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_json, a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and (
            not isinstance(b, bool)) and type(a) is not type(b):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


def assert_storable(container: Container, loaded: dict[str, Any]) -> None:
    """Accepted: the saver builds it, Redis's codec writes and reads it back the same, the
    real save stores it in Redis (its Lua script reading it back, too), and PostgreSQL takes it
    on both write paths (in a transaction rolled back)."""
    message = container.saver.build_message(_new_message(loaded))
    assert Message.from_dict(orjson.loads(_dumps(message.to_dict()))) == message
    assert_saved_in_redis(container, _new_message(loaded))
    with container.engine.connect() as connection, connection.begin() as transaction:
        connection.execute(insert(messages).values(
            message_row(f"fuzz-{message.id}"[:128], "fuzz", 0, message)))
        # The migration's COPY writes the stored timestamp text and orjson's metadata (and
        # tool calls) text.
        moment, metadata, calls, call_id = connection.execute(
            text("SELECT CAST(:created AS timestamptz), CAST(:metadata AS jsonb), "
                 "CAST(:calls AS jsonb), CAST(:call_id AS text)"),
            {"created": message.created_at,
             "metadata": orjson.dumps(message.metadata).decode(),
             "calls": orjson.dumps(message.tool_calls).decode() if message.tool_calls else None,
             "call_id": message.tool_call_id},
        ).one()
        assert utc_timestamp(moment) == message.created_at
        assert same_json(metadata, message.metadata), (metadata, message.metadata)
        assert same_json(calls, message.tool_calls) and call_id == message.tool_call_id
        stored = connection.execute(
            text("SELECT tool_calls, tool_call_id FROM messages WHERE conversation_id = :c"),
            {"c": f"fuzz-{message.id}"[:128]}).one()
        assert same_json(stored.tool_calls, message.tool_calls), stored
        assert stored.tool_call_id == message.tool_call_id
        transaction.rollback()


def assert_saved_in_redis(container: Container, command: NewMessage) -> None:
    """Saved in a session of its own, then an earlier message after it: the script walks back
    over the fuzzed message, decoding it (cjson), to put the late one before it."""
    key = uuid.uuid4().hex
    command = replace(command, tenant_id="fuzz", session_id=f"s-{key}", message_id=f"m-{key}",
                      conversation_id=None)
    outcome = container.saver.save(command)
    anchor = replace(command, message_id=f"a-{key}", role=Role.USER, content="first",
                     created_at="0001-01-01T00:00:00Z", metadata={}, name=None,
                     tool_calls=None, tool_call_id=None)
    container.saver.save(anchor)
    stored = {m.id: m for m in container.active_store.messages(outcome.conversation_id)}
    assert set(stored) == {command.message_id, anchor.message_id}
    saved = stored[command.message_id]
    assert (saved.role, saved.content, saved.name, saved.metadata) == (
        command.role, command.content, command.name, command.metadata)
    assert (saved.tool_calls, saved.tool_call_id) == (command.tool_calls, command.tool_call_id)
    if command.created_at:
        assert saved.created_at == command.created_at


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=save_payloads())
def test_save_message_accepts_only_what_both_tiers_store(
    container: Container, payload: dict[str, Any]
) -> None:
    schema = SaveMessageSchema(max_message_chars=container.settings.max_message_chars)
    try:
        loaded = validated(schema, payload)
    except InvalidPayload:
        event("refused")
        assert_a_reason(schema, payload)
        return
    event("accepted")
    if loaded["tool_calls"] or loaded["tool_call_id"]:
        event("accepted, with tool calls or a call id")
    assert_storable(container, loaded)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.one_of(st.lists(save_payloads(), max_size=3), JSON))
def test_save_messages_items_accepted_are_stored_and_refused_say_why(
    container: Container, batch: Any
) -> None:
    try:
        items = validated(SaveMessagesSchema(), {"messages": batch})["messages"]
    except InvalidPayload:
        assert_a_reason(SaveMessagesSchema(), {"messages": batch})
        return
    schema = SaveMessageSchema(max_message_chars=container.settings.max_message_chars)
    for item in items:
        try:
            loaded = validated(schema, item)
        except InvalidPayload:
            assert_a_reason(schema, item)
            continue
        assert_storable(container, loaded)
