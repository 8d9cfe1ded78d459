"""Liveness and readiness."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from conversation.adapters.dispatch import queue_depths
from conversation.adapters.metrics import LiveGauges, exposition

blp = Blueprint("health", __name__)


@blp.get("/health")
def health() -> Any:
    """The process answers."""
    return jsonify({"status": "ok"})


@blp.get("/ready")
def ready() -> Any:
    """Ready when PostgreSQL answers; Redis down means degraded, still serving from PostgreSQL."""
    container = current_app.extensions["conversation"]
    checks: dict[str, str] = {}
    for name, probe in (
        ("postgres", lambda: container.repository.ping()),
        ("redis", lambda: container.active_store.ping()),
    ):
        try:
            checks[name] = "ok" if probe() else "down"
        except Exception as exc:
            checks[name] = f"down: {type(exc).__name__}"
    ok = checks["postgres"] == "ok"
    status = "ok" if ok and checks["redis"] == "ok" else ("degraded" if ok else "unavailable")
    response = jsonify({"status": status, "checks": checks})
    response.status_code = 200 if ok else 503
    return response


@blp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics of every process of the service (multiprocess mode)."""
    container = current_app.extensions["conversation"]
    live = LiveGauges(lambda: queue_depths(container.producer),
                      lambda: container.active_store.active_session_count())
    body, content_type = exposition(live)
    return Response(body, content_type=content_type)
