"""Short leases in Redis."""
from __future__ import annotations

import uuid
from typing import Any

from conversation.adapters.redis import lua
from conversation.adapters.redis.keys import RedisKeys


class RedisLocks:
    """Short leases: SET NX with an expiry, released only by their holder."""

    def __init__(self, client: Any, prefix: str = "") -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self._release = client.register_script(lua.RELEASE_LOCK)

    def acquire(self, name: str, seconds: int) -> str | None:
        token = uuid.uuid4().hex
        if self.client.set(self.keys.lock(name), token, nx=True, ex=seconds):
            return token
        return None

    def release(self, name: str, token: str) -> None:
        self._release(keys=[self.keys.lock(name)], args=[token])
