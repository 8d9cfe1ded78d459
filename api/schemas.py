"""Query-string schemas of the API (marshmallow): unknown parameters are refused, and every
parameter is parsed and range-checked here, so a route receives only values its queries can
hold (instants in UTC within Python's range, decoded cursors, identifiers, text without NUL):
bad input is a 422, never a 500 further down."""
from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, overload

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from conversation.domain.messages import IDENTIFIER_PATTERN
from conversation.queries.listing import BadCursor, decode_cursor
from conversation.queries.search import BadSearchCursor, decode_search_cursor
from conversation.queries.stats import GROUPS

MAX_PAGE = 200


class Identifier(validate.Regexp):
    """The identifier pattern matched as a whole: `$` alone also matches before a trailing
    newline, which would make `acme\n` a tenant of its own."""

    def __init__(self) -> None:
        super().__init__(
            IDENTIFIER_PATTERN,
            error="must be 1-128 characters of letters, digits, '_', '-' and '.'",
        )

    @overload
    def __call__(self, value: str) -> str: ...

    @overload
    def __call__(self, value: bytes) -> bytes: ...

    def __call__(self, value: str | bytes) -> str | bytes:
        if not isinstance(value, str) or IDENTIFIER_PATTERN.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# PostgreSQL's text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> None:
    if UNSTORABLE.search(value):
        raise ValidationError("must not contain NUL or lone surrogate characters")


class UtcDateTime(fields.AwareDateTime):
    """An ISO-8601 instant with its offset, converted to UTC here: `0001-01-01T00:00:00+01:00`
    parses but is not an instant Python (or the queries after it) can hold."""

    default_error_messages = {
        "range": "is outside the range of instants this API holds "
                 "(0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z)",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(default_timezone=None, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise self.make_error("range") from None


class DecodedCursor(fields.String):
    """A cursor this API gave out, decoded here (a forged one is a 422, not a 500 later)."""

    def __init__(self, decode: Any, bad: type[Exception], max_length: int, **kwargs: Any) -> None:
        super().__init__(metadata={"maxLength": max_length}, **kwargs)
        self.decode, self.bad, self.max_length = decode, bad, max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > self.max_length:
            raise ValidationError(f"is longer than {self.max_length} characters")
        try:
            return self.decode(text)
        except self.bad as exc:
            raise ValidationError(str(exc)) from None


class QuerySchema(Schema):
    class Meta:
        unknown = RAISE


class RangeQuery(QuerySchema):
    from_ = UtcDateTime(data_key="from", load_default=None)
    to = UtcDateTime(load_default=None)

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("from_") and data.get("to") and data["from_"] >= data["to"]:
            raise ValidationError("`from` must be before `to`", "from")


class StatsQuery(RangeQuery):
    group_by = fields.String(load_default="day", validate=validate.OneOf(GROUPS))


class AgentStatsQuery(StatsQuery):
    tenant_id = fields.String(load_default=None, validate=Identifier())


class ListQuery(RangeQuery):
    status = fields.String(load_default=None, validate=validate.OneOf(("active", "closed")))
    agent_id = fields.String(load_default=None, validate=Identifier())
    session_id = fields.String(load_default=None, validate=Identifier())
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    cursor = DecodedCursor(decode_cursor, BadCursor, 600, load_default=None)


class SearchQuery(RangeQuery):
    q = fields.String(required=True,
                      validate=[validate.Length(min=1, max=500), storable_text])
    agent_id = fields.String(load_default=None, validate=Identifier())
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = DecodedCursor(decode_search_cursor, BadSearchCursor, 100, load_default=None)


class MessageOut(Schema):
    id = fields.String()
    role = fields.String()
    content = fields.String()
    name = fields.String(allow_none=True)
    created_at = fields.String()
    tokens = fields.Integer()
    encoding = fields.String()
    agent_id = fields.String(allow_none=True)
    metadata = fields.Dict()
    tool_calls = fields.List(fields.Dict(), metadata={
        "description": "an assistant message's tool calls, in Chat Completions' shape "
                       "(absent when it has none)"})
    tool_call_id = fields.String(metadata={
        "description": "the tool call a tool message answers (absent on other messages)"})


class ConversationSummaryOut(Schema):
    id = fields.String()
    tenant_id = fields.String()
    session_id = fields.String()
    agent_id = fields.String()
    status = fields.String()
    created_at = fields.String()
    closed_at = fields.String(allow_none=True)
    message_count = fields.Integer()
    last_message_at = fields.String(allow_none=True)


class ConversationOut(ConversationSummaryOut):
    tier = fields.String()
    summary = fields.String(allow_none=True)
    messages = fields.List(fields.Nested(MessageOut))


class ConversationPageOut(Schema):
    items = fields.List(fields.Nested(ConversationSummaryOut))
    next_cursor = fields.String(allow_none=True)


class PercentilesOut(Schema):
    median = fields.Float(allow_none=True)
    p90 = fields.Float(allow_none=True)


class MeasuresOut(Schema):
    conversations = fields.Integer(metadata={"description": "started in the period"})
    closed = fields.Integer(metadata={"description": "closed in the period"})
    messages = fields.Integer()
    messages_in = fields.Integer()
    messages_out = fields.Integer()
    messages_per_conversation = fields.Float(allow_none=True)
    tokens_in = fields.Integer()
    tokens_out = fields.Integer()
    duration_seconds = fields.Nested(PercentilesOut)
    first_response_seconds = fields.Nested(PercentilesOut)
    resolution_seconds = fields.Nested(PercentilesOut)
    satisfaction_avg = fields.Float(allow_none=True)
    rated = fields.Integer(metadata={"description": "conversations with a satisfaction score"})


class PeriodOut(MeasuresOut):
    period = fields.String()


class CountsOut(Schema):
    conversations = fields.Integer()
    closed = fields.Integer()
    messages = fields.Integer()
    tokens_in = fields.Integer()
    tokens_out = fields.Integer()


class AgentCountsOut(CountsOut):
    agent_id = fields.String()


class ModelCountsOut(CountsOut):
    model = fields.String()


class StatsOut(Schema):
    tenant_id = fields.String()
    agent_id = fields.String(allow_none=True)
    from_ = fields.String(data_key="from", attribute="from", allow_none=True)
    to = fields.String(allow_none=True)
    group_by = fields.String()
    active_now = fields.Integer(metadata={"description": "conversations in Redis now"})
    active_as_of = fields.String(allow_none=True, metadata={
        "description": "when the active snapshot was taken (every aggregate_stats run)"})
    dead_letters = fields.Integer(metadata={
        "description": "payloads of this tenant (and agent) dead-lettered in the range"})
    totals = fields.Nested(MeasuresOut)
    series = fields.List(fields.Nested(PeriodOut))
    agents = fields.List(fields.Nested(AgentCountsOut))
    models = fields.List(fields.Nested(ModelCountsOut))


class ErrorDetailOut(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Raw(allow_none=True)


class ErrorOut(Schema):
    """The contract's error body: `{"error": {"code", "message", "details"}}`."""

    error = fields.Nested(ErrorDetailOut, required=True)


class SearchHitOut(Schema):
    conversation_id = fields.String()
    message_id = fields.String()
    session_id = fields.String()
    agent_id = fields.String()
    status = fields.String()
    role = fields.String()
    created_at = fields.String()
    rank = fields.Float(allow_none=True, metadata={"description": "null for active ones"})
    snippet = fields.String(metadata={"description": "plain text around the matches"})
    highlights = fields.List(fields.List(fields.Integer()), metadata={
        "description": "[start, end) character spans of the matches in `snippet`"})
    tier = fields.String()


class SearchPageOut(Schema):
    query = fields.String()
    items = fields.List(fields.Nested(SearchHitOut), metadata={
        "description": "persisted messages: the tenant's newest 1,000 matches (of the "
                       "filters) best match first (ties newest first), then every older match "
                       "newest first"})
    next_cursor = fields.String(allow_none=True)
    active = fields.List(fields.Nested(SearchHitOut), metadata={
        "description": "conversations still in Redis whose messages hold every word (the "
                       "newest such message each; first page only)"})
