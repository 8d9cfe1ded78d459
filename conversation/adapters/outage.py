"""Redis outages: the active store behind a circuit breaker.

A Redis connection error marks the store down for `retry_after` seconds: calls then fail at
once with ActiveStoreUnavailable (the services fall back to PostgreSQL) instead of each waiting
for a timeout. After that, the next call tries Redis again. Entering and leaving degraded mode
is logged once each, not per message.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from conversation.adapters.metrics import DEGRADED
from conversation.services.ports import ActiveStoreUnavailable

log = logging.getLogger("conversation.degraded")

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError)


class CircuitBreaker:
    def __init__(self, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    def allow(self) -> bool:
        return self._down_since is None or time.monotonic() >= self._retry_at

    def failed(self, error: BaseException) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                DEGRADED.set(1)
                log.error("active store (Redis) unreachable: degraded mode, saving to and "
                          "reading from PostgreSQL (%s: %s)", type(error).__name__, error)
            self._retry_at = time.monotonic() + self.retry_after

    def succeeded(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is not None:
                DEGRADED.set(0)
                log.warning("active store (Redis) is back after %.1fs: degraded mode ends",
                            time.monotonic() - self._down_since)
                self._down_since = None


class GuardedActiveStore:
    """The active store's methods, each behind the circuit breaker."""

    def __init__(self, store: Any, breaker: CircuitBreaker) -> None:
        self._store = store
        self.breaker = breaker

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_store", "breaker"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._store, name, value)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute
        return self._guard(attribute)

    def _guard(self, method: Callable[..., Any]) -> Callable[..., Any]:
        breaker = self.breaker

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not breaker.allow():
                raise ActiveStoreUnavailable("Redis is down (degraded mode)")
            try:
                result = method(*args, **kwargs)
            except REDIS_ERRORS as error:
                breaker.failed(error)
                raise ActiveStoreUnavailable(str(error)) from error
            breaker.succeeded()
            return result

        return guarded
