"""The Redis adapter: the active store (one module per concern, composed by `store`), the key
schema (`keys`), the Lua scripts (`scripts/*.lua`, read by `lua`), the codec and the locks."""
from __future__ import annotations

from conversation.adapters.redis.arrivals import MAX_IDLE_PUBSUBS, ArrivalListener
from conversation.adapters.redis.history import RedisHistory
from conversation.adapters.redis.keys import (
    MIGRATED_MARKER_SECONDS,
    RELEASED_SESSION_SECONDS,
    TAIL_CHUNK,
    RedisKeys,
)
from conversation.adapters.redis.locks import RedisLocks
from conversation.adapters.redis.store import RedisActiveStore

__all__ = [
    "MAX_IDLE_PUBSUBS",
    "MIGRATED_MARKER_SECONDS",
    "RELEASED_SESSION_SECONDS",
    "TAIL_CHUNK",
    "ArrivalListener",
    "RedisActiveStore",
    "RedisHistory",
    "RedisKeys",
    "RedisLocks",
]
