"""API request latency for Prometheus, by route template (not raw path: bounded labels)."""
from __future__ import annotations

import time

from flask import Flask, Response, g, request

from conversation.adapters.metrics import API_SECONDS


def _start() -> None:
    g.request_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        API_SECONDS.labels(endpoint, request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
    return response


def register(app: Flask) -> None:
    app.before_request(_start)  # first: the time spent authenticating counts too
    app.after_request(_observe)
