"""Query-string schemas of the API (marshmallow): unknown parameters are refused."""
from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from conversation.domain.messages import IDENTIFIER_PATTERN
from conversation.views import GROUPS

MAX_PAGE = 200

Identifier = validate.Regexp(
    IDENTIFIER_PATTERN, error="must be 1-128 characters of letters, digits, '_', '-' and '.'"
)


class QuerySchema(Schema):
    class Meta:
        unknown = RAISE


class RangeQuery(QuerySchema):
    from_ = fields.AwareDateTime(data_key="from", load_default=None, default_timezone=None)
    to = fields.AwareDateTime(load_default=None, default_timezone=None)

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("from_") and data.get("to") and data["from_"] >= data["to"]:
            raise ValidationError("`from` must be before `to`", "from")


class StatsQuery(RangeQuery):
    group_by = fields.String(load_default="day", validate=validate.OneOf(GROUPS))


class AgentStatsQuery(StatsQuery):
    tenant_id = fields.String(load_default=None, validate=Identifier)


class ListQuery(RangeQuery):
    status = fields.String(load_default=None, validate=validate.OneOf(("active", "closed")))
    agent_id = fields.String(load_default=None, validate=Identifier)
    session_id = fields.String(load_default=None, validate=Identifier)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    cursor = fields.String(load_default=None, validate=validate.Length(max=600))


class SearchQuery(RangeQuery):
    q = fields.String(required=True, validate=validate.Length(min=1, max=500))
    agent_id = fields.String(load_default=None, validate=Identifier)
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(max=100))


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
        "description": "persisted messages, best match first"})
    next_cursor = fields.String(allow_none=True)
    active = fields.List(fields.Nested(SearchHitOut), metadata={
        "description": "conversations still in Redis whose messages hold every word (the "
                       "newest such message each; first page only)"})
