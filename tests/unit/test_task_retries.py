"""The domain tasks' retry policy: a retry for an unavailable active store waits past the
circuit breaker's window, whatever delay Celery's jitter drew; other retries keep theirs."""
from __future__ import annotations

from typing import Any

import celery
import pytest

from conversation.adapters.outage import CircuitBreaker
from conversation.services.ports import ActiveStoreUnavailable
from tasks.base import ACTIVE_STORE_RETRY_SECONDS, DomainTask


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def record(self: celery.Task, *args: Any, **options: Any) -> None:
        seen.append(options)

    monkeypatch.setattr(celery.Task, "retry", record)
    return seen


def test_an_unavailable_store_is_retried_after_the_breaker_window(retries) -> None:
    assert ACTIVE_STORE_RETRY_SECONDS > CircuitBreaker().retry_after
    task = DomainTask()
    task.retry(exc=ActiveStoreUnavailable("Redis is down"), countdown=0)
    task.retry(exc=ActiveStoreUnavailable("Redis is down"), countdown=5)
    task.retry(exc=ConnectionError("PostgreSQL"), countdown=0)
    assert [r["countdown"] for r in retries] == [ACTIVE_STORE_RETRY_SECONDS, 5, 0]


def test_redis_replies_that_mean_try_later_are_retried_others_fail(retries) -> None:
    import redis

    task = DomainTask()
    for reply in (redis.exceptions.OutOfMemoryError("command not allowed"),
                  redis.exceptions.ReadOnlyError("You can't write against a read only replica"),
                  redis.ResponseError("BUSY Redis is busy running a script"),
                  redis.ResponseError("Error running script (call to f_1): @user_script:1: "
                                      "@user_script: 1: -OOM command not allowed")):
        task.retry(exc=reply, countdown=1)
    assert len(retries) == 4
    with pytest.raises(redis.ResponseError):
        task.retry(exc=redis.ResponseError("WRONGTYPE Operation against a key"), countdown=1)
    assert len(retries) == 4
