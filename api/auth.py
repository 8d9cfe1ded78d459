"""Bearer API keys: each belongs to one tenant, or is an admin key."""
from __future__ import annotations

from flask import current_app, g, request

from api.errors import ApiError
from conversation.adapters.api_keys import Principal

PUBLIC_PATHS = ("/health", "/ready", "/metrics", "/api/openapi.json", "/api/docs", "/dashboard",
                "/static/", "/favicon.ico")


def authenticate() -> None:
    """before_request: every /api route needs a valid key (the docs excepted)."""
    if request.path.startswith(PUBLIC_PATHS) or request.method == "OPTIONS":
        return
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "send an API key as `Authorization: Bearer <key>`")
    principal = current_app.extensions["api_key_reads"].authenticate(key.strip())
    if principal is None:
        raise ApiError(401, "unknown or revoked API key")
    g.principal = principal


def principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]


def require_tenant(tenant_id: str) -> None:
    """A tenant's key on another tenant's path learns nothing beyond 'forbidden'."""
    if not principal().may_read(tenant_id):
        raise ApiError(403, "this API key does not give access to that tenant")
