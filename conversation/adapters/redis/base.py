"""What every part of the active store shares: the client, the keys, the registered scripts."""
from __future__ import annotations

from typing import Any

from redis.commands.core import Script

from conversation.adapters.redis.keys import RedisKeys


class RedisStoreBase:
    """The state the store's parts (sessions, conversations, migration queue, erasure,
    arrivals) work on; `RedisActiveStore.__init__` sets it."""

    client: Any
    keys: RedisKeys
    # Redis Cluster runs the session and conversation steps of a save apart.
    cluster: bool
    _append: Script
    _resolve: Script
    _save_in_session: Script
    _save_batch: Script
    _save_summary: Script
    _close: Script
    _open: Script
    _arm_timer: Script
    _close_into_timer: Script
    _take_timer: Script
    _finish: Script
    _release: Script
    _erase: Script
    _forget_session: Script
    _idle_pubsubs: list[Any]
