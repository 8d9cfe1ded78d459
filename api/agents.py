"""Agents: statistics of one agent's conversations."""
from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from api.auth import principal, require_tenant
from api.conversations import checked_id, json_response, queries
from api.errors import ApiError
from api.schemas import AgentStatsQuery, StatsOut

blp = Blueprint(
    "agents", __name__, url_prefix="/api/agents", description="Statistics per agent."
)


@blp.route("/<agent_id>/stats")
class AgentStats(MethodView):
    @blp.arguments(AgentStatsQuery, location="query", unknown=RAISE)
    @blp.response(200, StatsOut)
    def get(self, query: dict[str, Any], agent_id: str) -> Response:
        """Statistics of one agent's conversations over a range (a tenant key: its tenant)."""
        checked_id(agent_id, "agent")
        tenant_id = query["tenant_id"] or principal().tenant_id
        if tenant_id is None:
            raise ApiError(400, "an admin key must name the tenant_id", {"tenant_id": ["required"]})
        require_tenant(tenant_id)
        return json_response(queries().stats.stats_json(
            tenant_id,
            start=query["from_"],
            end=query["to"],
            group_by=query["group_by"],
            agent_id=agent_id,
        ))
