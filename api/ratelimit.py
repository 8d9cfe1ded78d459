"""Requests per API key (`API_RATE_LIMIT`, e.g. `600/minute`): a fixed window counted in Redis.

Fails open: with Redis down the API keeps answering from PostgreSQL, unthrottled, rather than
refusing everyone.
"""
from __future__ import annotations

import logging
import time

from flask import current_app, g

from api.errors import ApiError

log = logging.getLogger(__name__)

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(text: str) -> tuple[int, int]:
    """'600/minute' -> (600, 60)."""
    count, _, period = text.partition("/")
    try:
        return int(count), PERIODS[period.strip().lower().rstrip("s")]
    except (ValueError, KeyError) as exc:
        raise ValueError(f"API_RATE_LIMIT must look like 600/minute, got {text!r}") from exc


def enforce() -> None:
    """before_request, after authentication."""
    principal = g.get("principal")
    if principal is None:
        return
    container = current_app.extensions["conversation"]
    limit, period = parse_rate(container.settings.api_rate_limit)
    window = int(time.time() // period)
    key = f"{container.settings.redis_key_prefix}ratelimit:{principal.key_id}:{window}"
    try:
        pipe = container.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, period * 2)
        used = int(pipe.execute()[0])
    except Exception as exc:
        log.warning("rate limit not enforced (%s: %s)", type(exc).__name__, exc)
        return
    if used > limit:
        retry_after = period - int(time.time()) % period
        raise ApiError(429, f"more than {limit} requests per {period}s for this key",
                       {"retry_after_seconds": retry_after})
