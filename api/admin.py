"""Administration (admin keys only): erasure and retention."""
from __future__ import annotations

from typing import Any

from flask import Response, current_app, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from api.auth import principal
from api.conversations import checked_id
from api.errors import ApiError
from api.schemas import RangeQuery
from conversation.queries.export import FORMATS, encode, export_records

blp = Blueprint(
    "admin", __name__, url_prefix="/api/admin",
    description="Erasure and retention; admin keys only.",
)


def require_admin() -> None:
    if not principal().is_admin:
        raise ApiError(403, "this needs an admin key")


class RetentionIn(Schema):
    class Meta:
        unknown = RAISE

    days = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=36500))


class ErasedOut(Schema):
    erased = fields.Boolean()
    conversations = fields.Integer()
    dead_letters = fields.Integer()
    sessions = fields.Integer()
    api_keys = fields.Integer()  # revoked


@blp.route("/conversations/<conversation_id>")
class ConversationErasure(MethodView):
    @blp.response(200, ErasedOut)
    def delete(self, conversation_id: str) -> dict[str, Any]:
        """Erase one conversation from both tiers, with its summary and statistics."""
        require_admin()
        eraser = current_app.extensions["conversation"].eraser
        if not eraser.erase_conversation(checked_id(conversation_id, "conversation")):
            raise ApiError(404, "no such conversation")
        return {"erased": True, "conversations": 1}


@blp.route("/tenants/<tenant_id>")
class TenantErasure(MethodView):
    @blp.response(200, ErasedOut)
    def delete(self, tenant_id: str) -> dict[str, Any]:
        """Erase all of a tenant's conversations, dead letters and session records."""
        require_admin()
        report = current_app.extensions["conversation"].eraser.erase_tenant(
            checked_id(tenant_id, "tenant"))
        return {"erased": True, **report.__dict__}


@blp.route("/tenants/<tenant_id>/retention")
class TenantRetention(MethodView):
    @blp.arguments(RetentionIn)
    @blp.response(200, RetentionIn)
    def put(self, body: dict[str, Any], tenant_id: str) -> dict[str, Any]:
        """Keep a tenant's persisted conversations `days` days after their last message (0: for ever)."""
        require_admin()
        days = body["days"]
        current_app.extensions["conversation"].repository.set_retention(
            checked_id(tenant_id, "tenant"), days or None)
        return {"days": days}


class ExportQuery(RangeQuery):
    format = fields.String(load_default="jsonl", validate=validate.OneOf(FORMATS))


MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


@blp.route("/export/<tenant_id>")
class TenantExport(MethodView):
    @blp.arguments(ExportQuery, location="query", unknown=RAISE)
    @blp.response(200, content_type="application/x-ndjson")
    @blp.alt_response(200, content_type="text/csv")
    def get(self, query: dict[str, Any], tenant_id: str) -> Response:
        """A tenant's conversations created in [from, to) with their messages, one message per
        line (CSV or JSON Lines), streamed."""
        require_admin()
        container = current_app.extensions["conversation"]
        records = export_records(container.replica_engine, container.tiers,
                                 checked_id(tenant_id, "tenant"), query["from_"], query["to"])
        fmt = query["format"]
        return Response(
            stream_with_context(encode(records, fmt)),
            mimetype=MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="{tenant_id}.{fmt}"'},
        )
