"""Moved to the `conversation.adapters.redis` package; this name stays for the read side's
modules (views, search, export) until their imports move with issue 16's queries/ layer."""
from __future__ import annotations

from conversation.adapters.redis import (  # noqa: F401
    ArrivalListener,
    RedisActiveStore,
    RedisHistory,
    RedisKeys,
    RedisLocks,
)
