"""A cache of statistics answers in Redis, valid for one rollup generation.

The rollup changes only when aggregate_stats runs; each run bumps the generation, so a cached
answer is exactly as fresh as the rollup it was computed from, and a dashboard's many readers
cost one computation per run instead of one per request.
"""
from __future__ import annotations

from typing import Any

# Old generations' entries are never read again; they expire on their own.
ENTRY_SECONDS = 600


class StatsCache:
    def __init__(self, client: Any, prefix: str = "") -> None:
        self.client = client
        self.generation_key = f"{prefix}stats_cache:generation"
        self.prefix = f"{prefix}stats_cache:"

    def _key(self, tenant_id: str, query: str) -> str:
        return f"{self.prefix}{{{tenant_id}}}:{query}"

    def get(self, tenant_id: str, query: str) -> tuple[bytes, bytes | None]:
        """The current generation, and the answer cached under it (None if there is none)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.generation_key)
        pipe.get(self._key(tenant_id, query))
        generation, entry = pipe.execute()
        generation = generation or b"0"
        if entry:
            cached_generation, _, payload = entry.partition(b"|")
            if cached_generation == generation:
                return generation, payload
        return generation, None

    def put(self, tenant_id: str, query: str, generation: bytes, payload: bytes) -> None:
        """Store an answer computed under `generation` (read before computing it: an answer
        computed across a bump carries the old generation and is never served)."""
        self.client.set(self._key(tenant_id, query), generation + b"|" + payload,
                        ex=ENTRY_SECONDS)

    def invalidate(self) -> None:
        self.client.incr(self.generation_key)
