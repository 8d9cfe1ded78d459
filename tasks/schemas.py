"""Payload schemas of the domain actions (CONTRACT.md section 1), in marshmallow.

Every payload is validated before anything is stored; what fails goes to the dead-letter queue
with these messages, never retried.
"""
from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import orjson
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates,
    validates_schema,
)

from conversation.domain.messages import (
    IDENTIFIER_PATTERN,
    json_problem,
    stored_timestamp,
    text_problem,
)
from conversation.domain.stats import SATISFACTION_RANGE, satisfaction_score

IDENTIFIER = validate.Regexp(
    IDENTIFIER_PATTERN,
    error="must be 1-128 characters of letters, digits, '_', '-' and '.'",
)
ROLES = ("system", "user", "assistant", "tool")
MAX_METADATA_DEPTH = 16
MAX_METADATA_BYTES = 64 * 1024
MAX_BATCH = 1000
# A turn of parallel tool calls is a handful; a hundred and twenty-eight is far past any model's
# and still small. Their arguments are JSON text: together at most 256 KB, as orjson writes them.
MAX_TOOL_CALLS = 128
MAX_TOOL_CALLS_BYTES = 256 * 1024
# Arguments are parsed by every reader (json.loads: LangChain's history, the summary), which
# recurses: a few KB of "[[[[..." raised RecursionError there. No tool's arguments nest this deep.
MAX_ARGUMENTS_DEPTH = 64
# A JSON string (escapes included; an unterminated one runs to the end) and what is not a bracket.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")


class Identifier(fields.String):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=IDENTIFIER, **kwargs)


class Timestamp(fields.String):
    """An ISO-8601 instant, converted here to the UTC form it is stored in (a naive one is
    taken as UTC), by the storage's own code: what it cannot hold is refused with a reason."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return stored_timestamp(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


class PayloadSchema(Schema):
    class Meta:
        unknown = RAISE

    # Each field's value is walked before it is loaded: a NUL or a lone surrogate anywhere,
    # keys included, NaN, an integer orjson cannot write, or nesting past the limit is refused
    # here, with the field it is in (so no reason ever carries the bad text itself).
    check_values = True

    @pre_load
    def _storable_values(self, data: Any, **_: Any) -> Any:
        if not self.check_values or not isinstance(data, dict):
            return data  # a batch checks each item with its own schema; a non-dict, marshmallow
        errors: dict[str, list[str]] = {}
        for key, value in data.items():
            if not isinstance(key, str) or text_problem(key):
                errors.setdefault("_schema", []).append(
                    "a field name is not a string PostgreSQL can store (NUL, lone surrogate)"
                )
            elif problem := (text_problem(value) if type(value) is str
                             else json_problem(value, MAX_METADATA_DEPTH)):
                errors[key] = [problem]
        if errors:
            raise ValidationError(errors)
        return data


def arguments_depth(text: str) -> int:
    """How deep the brackets of a JSON text nest, outside its strings: a scan by two regular
    expressions, not a parse (a parse is what recursion would break), on text that need not be
    JSON (such arguments are stored as they are)."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


class ToolFunctionSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    # JSON text, as Chat Completions sends it: a string (a dict is refused, not re-encoded).
    arguments = fields.String(required=True)

    @validates("arguments")
    def _arguments(self, value: str, **_: Any) -> None:
        if arguments_depth(value) > MAX_ARGUMENTS_DEPTH:
            raise ValidationError(f"is nested deeper than {MAX_ARGUMENTS_DEPTH} levels")


class ToolCallSchema(Schema):
    """One call of an assistant message, in Chat Completions' shape. NUL and lone surrogates
    were refused before loading, by the walk of the whole `tool_calls` value."""

    class Meta:
        unknown = RAISE

    id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    type = fields.String(required=True, validate=validate.Equal("function"))
    function = fields.Nested(ToolFunctionSchema, required=True)


class SaveMessageSchema(PayloadSchema):
    tenant_id = Identifier(required=True)
    session_id = Identifier(required=True)
    agent_id = Identifier(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = fields.String(required=True)
    message_id = Identifier(load_default=None)
    conversation_id = Identifier(load_default=None)
    created_at = Timestamp(load_default=None)
    metadata = fields.Dict(keys=fields.String(), load_default=dict)
    name = fields.String(load_default=None, validate=validate.Length(min=1, max=128))
    tool_calls = fields.List(
        fields.Nested(ToolCallSchema), load_default=None, allow_none=True,
        validate=validate.Length(max=MAX_TOOL_CALLS,
                                 error=f"at most {MAX_TOOL_CALLS} tool calls are accepted"),
    )
    tool_call_id = fields.String(load_default=None, validate=validate.Length(min=1, max=128))

    def __init__(self, *, max_message_chars: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_message_chars = max_message_chars

    @validates("content")
    def _content(self, value: str, **_: Any) -> None:
        if len(value) > self.max_message_chars:
            raise ValidationError(
                f"is {len(value)} characters; at most {self.max_message_chars} are accepted"
            )

    def load_plain(self, data: Any) -> dict[str, Any] | None:
        """What `load` returns for a plain message, or None: then `load` decides.

        A plain message (no tool calls, every field of the type it must have) is what nearly
        every save carries, and marshmallow spends ~0.2 ms on one, most of a bulk save's
        worker time. This answers only when it is sure `load` accepts the message and what it
        returns: the same rules, the same helpers (text_problem, json_problem,
        metadata_problem, stored_timestamp). Anything else, every refusal included, goes to
        `load`, so each reason is marshmallow's own (tests/unit/test_plain_loads.py holds
        the two to the same answers on generated payloads)."""
        if type(data) is not dict or not data.keys() <= _PLAIN_FIELDS:
            return None
        get, identifier = data.get, _IDENTIFIER_MATCH
        tenant_id, session_id, agent_id = get("tenant_id"), get("session_id"), get("agent_id")
        role, content = get("role"), get("content")
        # type() first: the pattern takes only a str (marshmallow refuses any other type).
        if not (type(tenant_id) is str and type(session_id) is str and type(agent_id) is str
                and identifier(tenant_id) and identifier(session_id) and identifier(agent_id)
                and type(role) is str and role in ROLES
                and type(content) is str and len(content) <= self.max_message_chars
                and text_problem(content) is None):
            return None
        message_id, conversation_id = get("message_id"), get("conversation_id")
        name, tool_call_id = get("name"), get("tool_call_id")
        if not ((message_id is None or _is_identifier(message_id))
                and (conversation_id is None or _is_identifier(conversation_id))
                and (name is None or _is_short_text(name))
                and (tool_call_id is None or _is_short_text(tool_call_id))
                and get("tool_calls") is None
                and (tool_call_id is not None) == (role == "tool")):
            return None
        created_at = get("created_at")
        if created_at is not None:
            if type(created_at) is not str or text_problem(created_at) is not None:
                return None
            try:
                created_at = stored_timestamp(created_at)
            except ValueError:
                return None
        metadata = data.get("metadata", _NO_METADATA)
        if metadata is not _NO_METADATA:
            if (type(metadata) is not dict
                    or json_problem(metadata, MAX_METADATA_DEPTH) is not None
                    or metadata_problem(metadata) is not None):
                return None
            metadata = dict(metadata)  # a copy, as marshmallow's Dict field makes
        else:
            metadata = {}
        return {
            "tenant_id": tenant_id, "session_id": session_id,
            "agent_id": agent_id, "role": role, "content": content,
            "message_id": message_id, "conversation_id": conversation_id,
            "created_at": created_at, "metadata": metadata, "name": name,
            "tool_calls": None, "tool_call_id": tool_call_id,
        }

    @validates("tool_calls")
    def _tool_calls(self, value: list[dict[str, Any]] | None, **_: Any) -> None:
        if not value:
            return
        # .get: marshmallow may hand over what loaded of a list whose items failed.
        ids = [call.get("id") for call in value]
        if len(set(ids)) != len(ids):
            raise ValidationError("two tool calls of the message share an id")
        size = len(orjson.dumps(value))
        if size > MAX_TOOL_CALLS_BYTES:
            raise ValidationError(
                f"are {size} bytes; at most {MAX_TOOL_CALLS_BYTES} are accepted"
            )

    @validates_schema
    def _tool_fields(self, data: dict[str, Any], **_: Any) -> None:
        role = data.get("role")
        if data.get("tool_calls") and role != "assistant":
            raise ValidationError(f"only an assistant message carries tool calls, not {role!r}",
                                  "tool_calls")
        if role == "tool" and data.get("tool_call_id") is None:
            raise ValidationError("a tool message must name the tool call it answers",
                                  "tool_call_id")
        if role != "tool" and data.get("tool_call_id") is not None:
            raise ValidationError(f"only a tool message answers a tool call, not {role!r}",
                                  "tool_call_id")

    @post_load
    def _no_empty_tool_calls(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # `[]` is stored as no tool calls (Chat Completions refuses an empty list).
        if not data.get("tool_calls"):
            data["tool_calls"] = None
        return data

    @validates("metadata")
    def _metadata(self, value: dict[str, Any], **_: Any) -> None:
        # Its values were walked before loading (NUL, NaN, depth...): here, its size and
        # its rating.
        problem = metadata_problem(value)
        if problem is not None:
            raise ValidationError(problem)


def metadata_problem(value: dict[str, Any]) -> str | None:
    """Why a message's metadata (already walked by json_problem) is refused, or None."""
    # orjson writes it as both tiers will (Redis stores these bytes; PostgreSQL's jsonb is
    # fed them).
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        return f"is not JSON both tiers can store: {exc}"
    if size > MAX_METADATA_BYTES:
        return f"is {size} bytes; at most {MAX_METADATA_BYTES} are accepted"
    # A number here is a rating the statistics sum (conversation.domain.stats): one off
    # the scale is refused; a value that is not a number is no rating, and accepted.
    score = value.get("satisfaction")
    if (isinstance(score, int | float) and not isinstance(score, bool)
            and satisfaction_score(score) is None):
        low, high = SATISFACTION_RANGE
        return f"satisfaction must be a number from {low} to {high} (a rating), not {score!r}"[:200]
    return None


# SaveMessageSchema.load_plain's fields and checks: those of the schema's declared fields.
_PLAIN_FIELDS = frozenset(SaveMessageSchema._declared_fields)
_NO_METADATA: Any = object()
_IDENTIFIER_MATCH = IDENTIFIER_PATTERN.match


def _is_identifier(value: Any) -> bool:
    return type(value) is str and _IDENTIFIER_MATCH(value) is not None


def _is_short_text(value: Any) -> bool:
    """`name` and `tool_call_id`: 1-128 characters PostgreSQL can store."""
    return type(value) is str and 0 < len(value) <= 128 and text_problem(value) is None


class SaveMessagesSchema(PayloadSchema):
    check_values = False  # each item is checked by SaveMessageSchema, on its own
    messages = fields.List(
        fields.Raw(), required=True, validate=validate.Length(min=1, max=MAX_BATCH)
    )

    def load_plain(self, data: Any) -> dict[str, Any] | None:
        """What `load` returns for 1-1000 objects (each item is checked on its own, after),
        or None: then `load` decides (its List of Raw refuses a null item, for one)."""
        if type(data) is dict and len(data) == 1:
            messages = data.get("messages")
            if (type(messages) is list and 0 < len(messages) <= MAX_BATCH
                    and all(type(item) is dict for item in messages)):
                return {"messages": list(messages)}
        return None


class GetContextSchema(PayloadSchema):
    tenant_id = Identifier(required=True)
    conversation_id = Identifier(load_default=None)
    session_id = Identifier(load_default=None)
    model = fields.String(load_default=None, validate=validate.Length(min=1, max=128))
    window = fields.String(load_default=None, validate=validate.OneOf(("8k", "32k", "128k")))
    max_tokens = fields.Integer(
        load_default=None, strict=True, validate=validate.Range(min=1, max=2_000_000)
    )
    wait_for_message_id = Identifier(load_default=None)

    @validates_schema
    def _target(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("conversation_id") and not data.get("session_id"):
            raise ValidationError("conversation_id or session_id is required", "conversation_id")


class SessionClosedSchema(PayloadSchema):
    tenant_id = Identifier(required=True)
    session_id = Identifier(required=True)
    closed_at = Timestamp(load_default=None)


class SessionsClosedSchema(PayloadSchema):
    check_values = False  # each item is checked by SessionClosedSchema, on its own
    sessions = fields.List(
        fields.Raw(), required=True, validate=validate.Length(min=1, max=MAX_BATCH)
    )


class SessionOpenedSchema(PayloadSchema):
    tenant_id = Identifier(required=True)
    session_id = Identifier(required=True)


class MigrateConversationSchema(PayloadSchema):
    conversation_id = Identifier(required=True)
    generation = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class MigrateClosedSchema(PayloadSchema):
    second = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class QuarantinedConversationSchema(PayloadSchema):
    conversation_id = Identifier(required=True)


class SummariseSchema(PayloadSchema):
    conversation_id = Identifier(required=True)
    budget = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class NoArgumentsSchema(PayloadSchema):
    pass
