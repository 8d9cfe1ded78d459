"""How many times one task started and never finished: the bound on tasks that kill their
worker when the whole worker dies with them (the pool's own child deaths are retried by
Celery itself, `retry_on_worker_lost`, within the task's max_retries).

Starts are counted, not the broker's redeliveries: the Redis transport marks as redelivered
every message it restores, including ETA/countdown tasks (session timers, retries in backoff)
that a warm shutdown hands back without running them, and a countdown past the visibility
timeout is delivered again after a run that finished. Neither is a sign of a worker death.
A redelivered start counts one (first deliveries pay nothing); its end (success, failure,
retry) clears the count; so what a new redelivered start finds is the number of earlier starts of this attempt whose worker died under them."""
from __future__ import annotations

from typing import Any

# Long enough to outlive any redelivery (the broker's visibility timeout, a restart loop).
COUNT_SECONDS = 24 * 3600


class RedisDeliveryCounter:
    def __init__(self, client: Any, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, task_id: str, retries: int) -> str:
        return f"{self.prefix}task-starts:{task_id}:{retries}"

    def started(self, task_id: str, retries: int) -> int:
        """Count a start of this task's attempt; how many so far never finished (this one
        included)."""
        key = self._key(task_id, retries)
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, COUNT_SECONDS)
        count, _ = pipe.execute()
        return int(count)

    def finished(self, task_id: str, retries: int) -> None:
        """The attempt ended in its worker (stored, failed or retried): nothing to count."""
        self.client.delete(self._key(task_id, retries))
