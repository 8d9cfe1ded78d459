"""Every error is JSON `{"error": {"code", "message", "details"}}`; bad input is never a 500."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from psycopg.errors import QueryCanceled
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from conversation.services.ports import ActiveStoreUnavailable

log = logging.getLogger(__name__)

# Seconds a client waits before trying again while Redis is out of reach: a few times the
# circuit breaker's retry window, so a retry usually finds it decided.
ACTIVE_STORE_RETRY_AFTER = 5

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",  # and "timeout": a read cancelled by the statement timeout
}


class ApiError(HTTPException):
    """An error a route raises on purpose, with its own code and details."""

    def __init__(self, status: int, message: str, details: Any = None, code: str | None = None):
        super().__init__(description=message)
        self.code = status
        self.error_code = code or CODES.get(status, "error")
        self.details = details


def error_body(status: int, message: str, details: Any = None, code: str | None = None) -> Any:
    response = jsonify(
        {"error": {"code": code or CODES.get(status, "error"), "message": message,
                   "details": details}}
    )
    response.status_code = status
    return response


def handle_http_exception(error: HTTPException) -> Any:
    status = error.code or 500
    if isinstance(error, ApiError):
        return error_body(status, error.description or "", error.details, error.error_code)
    # webargs puts the validation messages of a 422 in `data`.
    data = getattr(error, "data", None) or {}
    details = data.get("messages") if isinstance(data, dict) else None
    message = error.description or error.name
    if details:
        message = "the request is not valid"
    return error_body(status, message, details)


def handle_database_error(error: OperationalError) -> Any:
    """PostgreSQL cancelled a read past API_STATEMENT_TIMEOUT_MS, or is out of reach: the
    service is unavailable for this request, which is not the client's fault nor a bug."""
    if isinstance(error.orig, QueryCanceled):
        log.warning("query cancelled by the statement timeout: %s", error.orig)
        return error_body(503, "the query took longer than this API allows; narrow the range "
                               "or try again later", None, "timeout")
    log.warning("database unavailable (%s: %s)", type(error.orig).__name__, error.orig)
    return error_body(503, "the database is unavailable; try again later")


def handle_active_store_unavailable(error: ActiveStoreUnavailable) -> Any:
    """Redis is out of reach and the answer depends on it (an erasure must reach both tiers;
    a conversation PostgreSQL lacks may be live in Redis): unavailable, try again later."""
    log.warning("active store unavailable for this request: %s", error)
    response = error_body(503, "the active store is unavailable; try again later")
    response.headers["Retry-After"] = str(ACTIVE_STORE_RETRY_AFTER)
    return response


def handle_unexpected(error: Exception) -> Any:
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log.exception("unhandled error")
    return error_body(500, InternalServerError.description, None, "internal_error")


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(OperationalError, handle_database_error)
    app.register_error_handler(ActiveStoreUnavailable, handle_active_store_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
