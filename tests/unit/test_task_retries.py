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


class RecordedLetters:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, letter: Any) -> None:
        self.sent.append(letter)


def test_a_task_redelivered_too_often_is_dead_lettered_without_running() -> None:
    """Its whole worker died with it each time: the broker's redeliveries are bounded too."""
    import fakeredis
    from celery.exceptions import Ignore

    from config.settings import Settings
    from conversation.bootstrap import Container, reset_container
    from tasks.base import MAX_REDELIVERIES

    letters = RecordedLetters()
    reset_container(Container(Settings(), redis=fakeredis.FakeRedis(), dead_letters=letters))
    app = celery.Celery("unit", set_as_current=False)

    @app.task(base=DomainTask, bind=True, name="conversation.save_message", shared=False)
    def task(self: DomainTask, **kwargs: Any) -> None:
        """A domain task (its body never runs here)."""

    try:
        task.push_request(id="first", retries=0, delivery_info={"redelivered": False})
        for _ in range(MAX_REDELIVERIES + 2):
            task.before_start("first", (), {"n": 1})  # not redelivered: never counted
        task.push_request(id="again", retries=0, delivery_info={"redelivered": True})
        for _ in range(MAX_REDELIVERIES):
            task.before_start("again", (), {"n": 2})
        assert letters.sent == []
        with pytest.raises(Ignore):
            task.before_start("again", (), {"n": 2})
        [letter] = letters.sent
        assert letter.kwargs == {"n": 2} and letter.task_id == "again"
        assert letter.error.startswith("WorkerLost: worker lost")
    finally:
        task.pop_request()
        task.pop_request()
        reset_container(None)
