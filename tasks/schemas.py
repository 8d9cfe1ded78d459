"""Payload schemas of the domain actions (CONTRACT.md section 1), in marshmallow.

Every payload is validated before anything is stored; what fails goes to the dead-letter queue
with these messages, never retried.
"""
from __future__ import annotations

from typing import Any

import orjson
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
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

IDENTIFIER = validate.Regexp(
    IDENTIFIER_PATTERN,
    error="must be 1-128 characters of letters, digits, '_', '-' and '.'",
)
ROLES = ("system", "user", "assistant", "tool")
MAX_METADATA_DEPTH = 16
MAX_METADATA_BYTES = 64 * 1024
MAX_BATCH = 1000


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

    @validates("metadata")
    def _metadata(self, value: dict[str, Any], **_: Any) -> None:
        # Its values were walked before loading (NUL, NaN, depth...): here, orjson writes it
        # as both tiers will (Redis stores these bytes; PostgreSQL's jsonb is fed them).
        try:
            size = len(orjson.dumps(value))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise ValidationError(f"is not JSON both tiers can store: {exc}") from exc
        if size > MAX_METADATA_BYTES:
            raise ValidationError(f"is {size} bytes; at most {MAX_METADATA_BYTES} are accepted")


class SaveMessagesSchema(PayloadSchema):
    check_values = False  # each item is checked by SaveMessageSchema, on its own
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
