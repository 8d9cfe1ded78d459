"""Every error is JSON `{"error": {"code", "message", "details"}}`; bad input is never a 500."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
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


def handle_unexpected(error: Exception) -> Any:
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log.exception("unhandled error")
    return error_body(500, InternalServerError.description, None, "internal_error")


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
