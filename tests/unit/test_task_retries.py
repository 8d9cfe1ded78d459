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


@pytest.fixture
def counted_task() -> Any:
    """A domain task over a container whose Redis is fakeredis (the real counter on it)."""
    import fakeredis

    from config.settings import Settings
    from conversation.bootstrap import Container, Overrides, reset_container

    letters = RecordedLetters()
    reset_container(Container(Settings(), Overrides(
        redis=fakeredis.FakeRedis(), dead_letters=letters)))  # type: ignore[arg-type]
    app = celery.Celery("unit", set_as_current=False)

    @app.task(base=DomainTask, bind=True, name="conversation.save_message", shared=False)
    def task(self: DomainTask, **kwargs: Any) -> None:
        """A domain task (its body never runs here)."""

    task.letters = letters
    yield task
    while task.request_stack.top is not None:
        task.pop_request()
    reset_container(None)


def test_a_task_whose_runs_never_finish_is_dead_lettered_without_running(counted_task) -> None:
    """Its whole worker died with it each time: the broker's redeliveries are bounded too (the
    first delivery, which may be the one that killed the worker, plus MAX_REDELIVERIES)."""
    from celery.exceptions import Ignore

    from tasks.base import MAX_REDELIVERIES

    task = counted_task
    task.push_request(id="poison", retries=0, delivery_info={"redelivered": False})
    task.before_start("poison", (), {"n": 2})  # ran, and its worker died
    task.push_request(id="poison", retries=0, delivery_info={"redelivered": True})
    for _ in range(MAX_REDELIVERIES):
        task.before_start("poison", (), {"n": 2})
    assert task.letters.sent == []
    with pytest.raises(Ignore):
        task.before_start("poison", (), {"n": 2})
    [letter] = task.letters.sent
    assert letter.kwargs == {"n": 2} and letter.task_id == "poison"
    assert letter.error.startswith("WorkerLost: worker lost")


def test_redeliveries_of_runs_that_finished_never_count(counted_task) -> None:
    """A delivery the broker restored without running it (an ETA/countdown task at a warm
    shutdown), or sent again after a run that finished (a countdown past the visibility
    timeout, a lost ack), is no sign of a worker death: it runs, however often it comes.
    Failed before the fix: the 4th redelivered run was dead-lettered without running."""
    from tasks.base import MAX_REDELIVERIES

    task = counted_task
    task.push_request(id="healthy", retries=0, delivery_info={"redelivered": True})
    for _ in range(MAX_REDELIVERIES + 3):
        task.before_start("healthy", (), {"n": 1})
        task.after_return("SUCCESS", None, "healthy", (), {"n": 1}, None)
    task.push_request(id="healthy", retries=1, delivery_info={"redelivered": True})
    for _ in range(MAX_REDELIVERIES + 3):
        task.before_start("healthy", (), {"n": 1})
        task.on_retry(ConnectionError("PostgreSQL"), "healthy", (), {"n": 1}, None)
    assert task.letters.sent == []


def test_first_deliveries_cost_no_round_trip(counted_task) -> None:
    """Only a redelivered task is counted: the common case (every save) pays nothing."""
    from conversation.bootstrap import container

    task = counted_task
    task.push_request(id="plain", retries=0, delivery_info={"redelivered": False})
    task.before_start("plain", (), {"n": 1})
    assert container().deliveries.client.keys("*") == []  # nothing counted while it runs
