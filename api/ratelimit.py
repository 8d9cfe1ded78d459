"""Requests per API key (`API_RATE_LIMIT`, e.g. `600/minute`): flask-limiter's moving window in
Redis, so never more than N requests in any window of that length, across a minute's edge too
(a fixed window lets 2N through around its edge). Counted per key id (never the key itself);
past the limit, 429 JSON with `Retry-After`: the seconds until the oldest counted request
leaves the window.

Fails open: with Redis down the API keeps answering from PostgreSQL, unthrottled, rather than
refusing everyone (flask-limiter's swallow_errors).
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

from flask import Flask, Response, g
from flask_limiter import Limiter, RateLimitExceeded
from limits import parse_many
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.errors import error_body
from config.settings import Settings

log = logging.getLogger(__name__)


def storage_uri(settings: Settings) -> str:
    """The API's Redis, as limits names it (a cluster has a scheme of its own)."""
    url = settings.require("redis_url")
    if settings.redis_cluster:
        scheme, _, rest = url.partition("://")
        return f"redis+cluster://{rest.split('/')[0]}"
    return url


def _key() -> str:
    return f"key{g.principal.key_id}"


def _unauthenticated() -> bool:
    # Public paths (health, docs, dashboard) have no key and no limit; a request without a
    # valid key never gets here (401 first).
    return g.get("principal") is None


class _OneLine(logging.Filter):
    """flask-limiter logs a traceback for every request while Redis is down: a line will do."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error}); failing open"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


_limiter_log = logging.getLogger("flask-limiter")
if not any(isinstance(f, _OneLine) for f in _limiter_log.filters):
    _limiter_log.addFilter(_OneLine())


def init_app(app: Flask, settings: Settings) -> Limiter:
    """After authentication's before_request: the limit is per authenticated key."""
    try:
        parse_many(settings.api_rate_limit)
    except ValueError as exc:
        raise ValueError(f"API_RATE_LIMIT must look like 600/minute or 100/10 seconds, got "
                         f"{settings.api_rate_limit!r}") from exc
    limiter = Limiter(
        _key,
        application_limits=[settings.api_rate_limit],  # one count per key, all routes
        strategy="moving-window",
        storage_uri=storage_uri(settings),
        storage_options={
            "key_prefix": f"{settings.redis_key_prefix}ratelimit",
            "socket_connect_timeout": 1,
            "socket_timeout": 1,
            # One retry for a pooled socket a Redis restart left dead; no backoff, so that an
            # outage costs a refused connection per request, not seconds.
            "retry": Retry(NoBackoff(), 1),  # type: ignore[dict-item]
        },
        swallow_errors=True,
        headers_enabled=False,  # Retry-After on 429 only: no window read on every request
    )
    limiter.request_filter(_unauthenticated)
    limiter.init_app(app)
    app.extensions["rate_limiter"] = limiter

    def too_many_requests(error: RateLimitExceeded) -> Response:
        retry_after = _retry_after(limiter)
        response: Response = error_body(
            429, f"more than {error.limit.limit} for this API key",
            {"limit": str(error.limit.limit), "retry_after_seconds": retry_after})
        response.headers["Retry-After"] = str(retry_after)
        return response

    app.register_error_handler(RateLimitExceeded, too_many_requests)
    return limiter


def _retry_after(limiter: Limiter) -> int:
    """Seconds until the oldest request in the window leaves it (at least 1)."""
    breached: Any = limiter.current_limit
    try:
        # The window's own reset time (RequestLimit.reset_at rounds it up and adds a second).
        reset_at = breached.window.reset_time if breached is not None else None
    except Exception as exc:  # Redis went away between the hit and this read
        log.warning("rate limit window not read (%s: %s)", type(exc).__name__, exc)
        reset_at = None
    if reset_at is None:
        return 1
    return max(1, math.ceil(reset_at - time.time()))
