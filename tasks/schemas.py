"""Payload schemas of the domain actions (CONTRACT.md section 1), in marshmallow.

Every payload is validated before anything is stored; what fails goes to the dead-letter queue
with these messages, never retried.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from conversation.domain.messages import IDENTIFIER_PATTERN
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

IDENTIFIER = validate.Regexp(
    IDENTIFIER_PATTERN,
    error="must be 1-128 characters of letters, digits, '_', '-' and '.'",
)
ROLES = ("system", "user", "assistant", "tool")
MAX_METADATA_DEPTH = 16
MAX_METADATA_BYTES = 64 * 1024
MAX_BATCH = 1000


def _check_utf8(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError("is not valid UTF-8 (lone surrogate)") from exc
    if "\x00" in value:
        raise ValidationError("contains a NUL character, which PostgreSQL cannot store")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, iteratively (a recursive walk would overflow on hostile input)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


class Identifier(fields.String):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=IDENTIFIER, **kwargs)


class Timestamp(fields.String):
    """An ISO-8601 instant, kept as given; a naive one is taken as UTC."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValidationError("is not an ISO-8601 timestamp") from exc
        return text


class PayloadSchema(Schema):
    class Meta:
        unknown = RAISE


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

    def __init__(self, *, max_message_chars: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_message_chars = max_message_chars

    @validates("content")
    def _content(self, value: str, **_: Any) -> None:
        if len(value) > self.max_message_chars:
            raise ValidationError(
                f"is {len(value)} characters; at most {self.max_message_chars} are accepted"
            )
        _check_utf8(value)

    @validates("name")
    def _name(self, value: str | None, **_: Any) -> None:
        if value is not None:
            _check_utf8(value)

    @validates("metadata")
    def _metadata(self, value: dict[str, Any], **_: Any) -> None:
        if _depth(value, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
            raise ValidationError(f"is nested deeper than {MAX_METADATA_DEPTH} levels")
        try:
            size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            raise ValidationError(f"is not JSON-serialisable UTF-8: {exc}") from exc
        if size > MAX_METADATA_BYTES:
            raise ValidationError(f"is {size} bytes; at most {MAX_METADATA_BYTES} are accepted")


class SaveMessagesSchema(PayloadSchema):
    messages = fields.List(
        fields.Raw(), required=True, validate=validate.Length(min=1, max=MAX_BATCH)
    )


class GetContextSchema(PayloadSchema):
    tenant_id = Identifier(required=True)
    conversation_id = Identifier(load_default=None)
    session_id = Identifier(load_default=None)
    model = fields.String(load_default=None, validate=validate.Length(min=1, max=128))
    window = fields.String(load_default=None, validate=validate.OneOf(("8k", "32k", "128k")))
    max_tokens = fields.Integer(
        load_default=None, strict=True, validate=validate.Range(min=1, max=2_000_000)
    )

    @validates_schema
    def _target(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("conversation_id") and not data.get("session_id"):
            raise ValidationError("conversation_id or session_id is required", "conversation_id")


class SessionClosedSchema(PayloadSchema):
    tenant_id = Identifier(required=True)
    session_id = Identifier(required=True)
    closed_at = Timestamp(load_default=None)


class SessionOpenedSchema(PayloadSchema):
    tenant_id = Identifier(required=True)
    session_id = Identifier(required=True)


class MigrateConversationSchema(PayloadSchema):
    conversation_id = Identifier(required=True)
    generation = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class QuarantinedConversationSchema(PayloadSchema):
    conversation_id = Identifier(required=True)


class SummariseSchema(PayloadSchema):
    conversation_id = Identifier(required=True)
    budget = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class NoArgumentsSchema(PayloadSchema):
    pass
