"""Beat's scheduler: celery-redbeat, made to ride out an outage of its Redis.

redbeat keeps the schedule and a lock in Redis, so several beats can run and only the lock
holder sends. Out of the box, any Redis error in a tick (a connection refused, the lock lost
while Redis was away) ends the beat process. redbeat's own `retry_period` option does not
cover the lock (the lock talks to the raw client) and blocks the loop for minutes in a retry, so
instead each tick here catches the errors that mean "Redis is away", logs once, and tries again
on the next tick; when Redis is back, the lock is taken again (or waited for, if another beat
took it meanwhile) and the schedule re-installed if Redis lost it.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import redis
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis
from redis.lock import Lock

from config.settings import ConfigurationError

logger = logging.getLogger("celery.beat")

# "Redis is away, or lost our state": worth waiting for, never worth exiting for.
REDIS_AWAY = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.LockError)
# While Redis is away, try again this often (seconds).
RETRY_SECONDS = 1.0


class ResilientRedBeatScheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat whose ticks survive an outage of its Redis (see the module docstring)."""

    # redbeat's: the schedule lock while this beat holds it (None: standing by).
    lock: Lock | None

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        if not app.conf.get("redbeat_redis_url"):
            raise ConfigurationError(
                "beat has no plain Redis for its schedule and lock: set BEAT_REDIS_URL "
                "(see README); the broker is not Redis and neither is the result backend."
            )
        self._installed = False
        self._away_since: str | None = None
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        try:
            super().setup_schedule()
        except REDIS_AWAY as exc:
            self._went_away(exc)  # the first tick after Redis returns installs it
            return
        self._installed = True

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            if not self._installed:
                self.setup_schedule()
                if not self._installed:
                    return RETRY_SECONDS
            if self.lock_key and self.lock is None and not self._take_lock():
                return float(self.max_interval)  # another beat schedules: stand by
            interval = float(super().tick(*args, **kwargs))
        except REDIS_AWAY as exc:
            if isinstance(exc, redis.exceptions.LockError):
                # The lock expired while Redis was away (or Redis restarted empty): another
                # beat may hold it now. Take it again before sending anything.
                logger.warning("beat: lost the lock (%s): taking it again", exc)
                self.lock = None
                self._installed = False  # Redis may have lost the schedule too
            else:
                self._went_away(exc)
            return RETRY_SECONDS
        if self._away_since is not None:
            logger.warning("beat: Redis is back (away since %s): scheduling again",
                           self._away_since)
            self._away_since = None
        return interval

    def _take_lock(self) -> bool:
        """Take the lock without blocking the loop (redbeat's startup signal blocks in it)."""
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        if not lock.acquire(blocking=False):
            return False
        logger.info("beat: Acquired lock")
        self.lock = lock
        return True

    def _went_away(self, exc: BaseException) -> None:
        if self._away_since is None:
            self._away_since = datetime.now(UTC).isoformat(timespec="seconds")
            logger.warning("beat: its Redis is unreachable (%s): retrying every %ss, "
                           "nothing is scheduled meanwhile", exc, RETRY_SECONDS)

    def close(self) -> None:
        try:
            super().close()
        except REDIS_AWAY as exc:  # stopping while Redis is away: the lock expires by itself
            logger.warning("beat: could not release the lock (%s); it expires in %ss",
                           exc, self.lock_timeout)
            self.lock = None


def check_beat_redis(url: str) -> None:
    """Refuse a cluster node as beat's Redis (redbeat would fail on MOVED at its first write).
    An unreachable Redis passes: beat waits for it."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        enabled = client.info("cluster").get("cluster_enabled")
    except redis.RedisError:
        return
    finally:
        client.close()
    if enabled:
        raise ConfigurationError(
            f"BEAT_REDIS_URL ({url}) is a Redis Cluster node: beat needs a plain Redis "
            "(a single server, e.g. the broker's)."
        )
