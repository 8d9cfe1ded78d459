"""The active store: conversations in Redis under the contract's keys (CONTRACT.md section 2),
composed of one part per concern (sessions, conversations, migration queue, erasure, arrivals).

Each message is stored as JSON with its token count, in a list kept in `created_at` order:
the common case appends; a late arrival is inserted where its time puts it.
"""
from __future__ import annotations

from typing import Any

import redis

from conversation.adapters.redis import lua
from conversation.adapters.redis.arrivals import RedisArrivals
from conversation.adapters.redis.erasure import RedisErasure
from conversation.adapters.redis.keys import RedisKeys


class RedisActiveStore(RedisErasure, RedisArrivals):
    """The active store (services.ports.ActiveStore), its parts composed."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self._append = client.register_script(lua.APPEND)
        self._resolve = client.register_script(lua.RESOLVE_SESSION)
        self._save_in_session = client.register_script(lua.SAVE_IN_SESSION)
        self._save_batch = client.register_script(lua.SAVE_BATCH)
        self._save_summary = client.register_script(lua.SAVE_SUMMARY)
        self._close = client.register_script(lua.CLOSE_SESSION)
        self._open = client.register_script(lua.OPEN_SESSION)
        self._arm_timer = client.register_script(lua.ARM_CLOSE_TIMER)
        self._close_into_timer = client.register_script(lua.CLOSE_INTO_TIMER)
        self._take_timer = client.register_script(lua.TAKE_CLOSE_TIMER)
        self._finish = client.register_script(lua.FINISH_MIGRATION)
        self._release = client.register_script(lua.RELEASE_SESSION)
        self._erase = client.register_script(lua.ERASE_CONVERSATION)
        self._forget_session = client.register_script(lua.FORGET_SESSION)
        # Redis Cluster runs the session and conversation steps of a save apart.
        self.cluster = not isinstance(client, redis.Redis)
        self._idle_pubsubs: list[Any] = []

    def ping(self) -> bool:
        return bool(self.client.ping())
