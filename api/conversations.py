"""Conversations: statistics, filtered lists and full transcripts, per tenant."""
from __future__ import annotations

from typing import Any

from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from api.auth import principal, require_tenant
from api.errors import ApiError
from api.schemas import (
    ConversationOut,
    ConversationPageOut,
    ListQuery,
    SearchPageOut,
    SearchQuery,
    StatsOut,
    StatsQuery,
)
from conversation.domain.messages import IDENTIFIER_PATTERN
from conversation.queries import ReadQueries
from conversation.queries.listing import ListFilters
from conversation.queries.search import SearchFilters

blp = Blueprint(
    "conversations", __name__, url_prefix="/api/conversations",
    description="Conversations of a tenant: statistics, lists, transcripts.",
)


def queries() -> ReadQueries:
    return current_app.extensions["conversation_queries"]  # type: ignore[no-any-return]


def json_response(payload: bytes) -> Response:
    """Already-serialised JSON (the statistics cache keeps answers as bytes)."""
    return Response(payload, mimetype="application/json")


def checked_id(value: str, what: str) -> str:
    """A path identifier; as a whole (`match` would take `acme\n` for `acme`)."""
    if not IDENTIFIER_PATTERN.fullmatch(value):
        raise ApiError(404, f"no such {what}")
    return value


@blp.route("/stats/<tenant_id>")
class TenantStats(MethodView):
    @blp.arguments(StatsQuery, location="query", unknown=RAISE)
    @blp.response(200, StatsOut)
    def get(self, query: dict[str, Any], tenant_id: str) -> Response:
        """Statistics of a tenant's conversations over a range, by day, week or month.

        From the rollup aggregate_stats keeps (every minute): an answer is as fresh as the
        last run, which `active_as_of` tells."""
        require_tenant(checked_id(tenant_id, "tenant"))
        return json_response(queries().stats.stats_json(
            tenant_id, start=query["from_"], end=query["to"], group_by=query["group_by"]
        ))


@blp.route("/list/<tenant_id>")
class TenantConversations(MethodView):
    @blp.arguments(ListQuery, location="query", unknown=RAISE)
    @blp.response(200, ConversationPageOut)
    def get(self, query: dict[str, Any], tenant_id: str) -> dict[str, Any]:
        """A tenant's conversations, newest first, filtered, with cursor pagination."""
        require_tenant(checked_id(tenant_id, "tenant"))
        filters = ListFilters(
            status=query["status"],
            agent_id=query["agent_id"],
            session_id=query["session_id"],
            start=query["from_"],
            end=query["to"],
        )
        return queries().listing.list_conversations(tenant_id, filters, query["limit"], query["cursor"])


@blp.route("/search/<tenant_id>")
class TenantSearch(MethodView):
    @blp.arguments(SearchQuery, location="query", unknown=RAISE)
    @blp.response(200, SearchPageOut)
    def get(self, query: dict[str, Any], tenant_id: str) -> dict[str, Any]:
        """Full-text search over a tenant's messages (language-aware, ranked, highlighted),
        and the active conversations that contain every word."""
        require_tenant(checked_id(tenant_id, "tenant"))
        search = queries().search
        filters = SearchFilters(start=query["from_"], end=query["to"],
                                agent_id=query["agent_id"])
        return search.search(tenant_id, query["q"], filters, query["limit"],
                             query["cursor"] or 0)


@blp.route("/<conversation_id>/full")
class FullConversation(MethodView):
    @blp.response(200, ConversationOut)
    def get(self, conversation_id: str) -> dict[str, Any]:
        """One conversation with all its messages, from whichever tier holds it."""
        found = queries().transcripts.full_conversation(checked_id(conversation_id, "conversation"))
        # Another tenant's conversation answers exactly like a missing one.
        if found is None or not principal().may_read(found["tenant_id"]):
            raise ApiError(404, "no such conversation")
        return found
