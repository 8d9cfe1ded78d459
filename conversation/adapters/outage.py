"""Redis outages: the active store behind a circuit breaker.

A Redis connection error, or a reply that means "try later" (OOM under noeviction,
READONLY during a failover, BUSY, LOADING, CLUSTERDOWN, TRYAGAIN), marks the store down for `retry_after` seconds: calls then fail at
once with ActiveStoreUnavailable (the services fall back to PostgreSQL) instead of each waiting
for a timeout. After that, the next call tries Redis again. Entering and leaving degraded mode
is logged once each, not per message.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import redis

from conversation.adapters.metrics import DEGRADED
from conversation.services.ports import ActiveStoreUnavailable, History, MessageRecord

log = logging.getLogger("conversation.degraded")

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError)

# Replies that mean "not now": out of memory under noeviction, a replica during a failover,
# a long script, a restart loading its data, a cluster resharding or without a quorum.
# redis-py maps some to classes; others (and any raised inside a Lua script, where Redis 6
# reports "...: -OOM command not allowed...") arrive as a ResponseError naming the code.
TRANSIENT_REPLY_CLASSES: tuple[type[BaseException], ...] = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
)
TRANSIENT_REPLY_CODES = ("OOM", "READONLY", "BUSY", "LOADING", "CLUSTERDOWN", "TRYAGAIN",
                         "MASTERDOWN")
_TRANSIENT_REPLY = re.compile(r"(?:^|[\s:-])(?:%s)\b" % "|".join(TRANSIENT_REPLY_CODES))


def is_transient_reply(error: BaseException) -> bool:
    """A Redis error reply that means "try later", not "this request is wrong"."""
    if isinstance(error, TRANSIENT_REPLY_CLASSES):
        return True
    return isinstance(error, redis.ResponseError) and bool(_TRANSIENT_REPLY.search(str(error)))


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
                log.error("active store (Redis) unavailable: degraded mode, saving to and "
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

    def owned_history(
        self, conversation_id: str, *args: Any, **kwargs: Any
    ) -> tuple[str | None, History]:
        """The store's, with the History behind the breaker too: its later reads (older
        chunks, stored counts) go to Redis long after this call returned."""
        owner, history = self._guard(self._store.owned_history)(conversation_id, *args, **kwargs)
        return owner, GuardedHistory(history, self._failures)

    def _guard(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """`method` refused at once while the breaker is open; its success closes it."""
        breaker = self.breaker
        counted = self._failures(method)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not breaker.allow():
                raise ActiveStoreUnavailable("Redis is down (degraded mode)")
            result = counted(*args, **kwargs)
            breaker.succeeded()
            return result

        return guarded

    def _failures(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """`method` whose Redis failures open the breaker and raise ActiveStoreUnavailable."""
        breaker = self.breaker

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except REDIS_ERRORS as error:
                breaker.failed(error)
                raise ActiveStoreUnavailable(str(error)) from error
            except redis.ResponseError as error:
                if not is_transient_reply(error):
                    raise
                # Full, read-only or busy: unusable for now, as if down (PostgreSQL serves).
                breaker.failed(error)
                raise ActiveStoreUnavailable(f"{type(error).__name__}: {error}") from error

        return counted


class GuardedHistory:
    """A History whose Redis failures count: an error in a later chunk read (or storing
    counts) opens the breaker and raises ActiveStoreUnavailable like any other active-store
    call. Its reads are not refused while the breaker is open, nor do they close it: most
    answer from the round trip owned_history made (count, first, the newest chunk), which
    says nothing about Redis now, and a context half read is finished if Redis allows."""

    def __init__(
        self, history: History,
        guard: Callable[[Callable[..., Any]], Callable[..., Any]],
    ) -> None:
        self._history = history
        self._guard = guard

    def count(self) -> int:
        return int(self._guard(self._history.count)())

    def first(self, encoding: str | None = None) -> MessageRecord | None:
        record: MessageRecord | None = self._guard(self._history.first)(encoding)
        return record

    def newest_chunks(self, encoding: str | None = None) -> Iterator[list[MessageRecord]]:
        chunks = self._history.newest_chunks(encoding)
        # Each step of the walk is a call of its own (one LRANGE), guarded as such.
        step = self._guard(lambda: next(chunks, None))
        while (chunk := step()) is not None:
            yield chunk

    def store_counts(self, encoding: str, counts: Mapping[str, int]) -> None:
        self._guard(self._history.store_counts)(encoding, counts)
