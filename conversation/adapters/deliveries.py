"""How many times the broker delivered one task again: the bound on tasks that kill their
worker when the whole worker dies with them (the pool's own child deaths are retried by
Celery itself, `retry_on_worker_lost`, within the task's max_retries)."""
from __future__ import annotations

from typing import Any

# Long enough to outlive any redelivery (the broker's visibility timeout, a restart loop).
COUNT_SECONDS = 24 * 3600


class RedisDeliveryCounter:
    def __init__(self, client: Any, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix

    def redelivered(self, task_id: str, retries: int) -> int:
        """Count one more redelivery of this task's attempt; how many so far."""
        key = f"{self.prefix}redeliveries:{task_id}:{retries}"
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, COUNT_SECONDS)
        count, _ = pipe.execute()
        return int(count)
