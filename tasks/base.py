"""One base Task for every domain action: late acks, time limits, retries, dead letters."""
from __future__ import annotations

import logging
import traceback
from typing import Any, Literal

import psycopg
import redis
import sqlalchemy.exc
from billiard.exceptions import WorkerLostError
from celery import Task, signals
from celery.exceptions import Ignore
from kombu.exceptions import OperationalError as KombuOperationalError
from marshmallow import Schema, ValidationError

from config.celery import TASK_QUEUES
from conversation.adapters.dead_letters import DeadLetter
from conversation.adapters.metrics import WORKER_LOST
from conversation.adapters.outage import TRANSIENT_REPLY_CLASSES, is_transient_reply
from conversation.bootstrap import container
from conversation.domain.errors import DomainError
from conversation.services.ports import ActiveStoreUnavailable

log = logging.getLogger(__name__)

# Failures worth retrying: the servers, not the payload.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.BusyLoadingError,
    # Redis replies that mean "try later" (OOM, READONLY, ...): see is_transient_reply.
    *TRANSIENT_REPLY_CLASSES,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    psycopg.OperationalError,
    KombuOperationalError,
    ConnectionError,
    TimeoutError,
)


# A task whose whole worker died with it comes back from the broker; once it has started this
# many times more than once without finishing, it is dead-lettered without running (a payload
# that kills its worker would otherwise kill every worker in turn, for ever).
MAX_REDELIVERIES = 3


class WorkerLost(Exception):
    """The task's worker process died running it (out of memory, a segfault), too often."""


# Longer than the circuit breaker's retry window (conversation.adapters.outage: 1 s).
ACTIVE_STORE_RETRY_SECONDS = 2


class InvalidPayload(Exception):
    """The payload failed validation; `reasons` are marshmallow's messages."""

    def __init__(self, reasons: Any) -> None:
        super().__init__(f"invalid payload: {reasons}")
        self.reasons = reasons


def validated(schema: Schema, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        return dict(schema.load(kwargs))
    except ValidationError as exc:
        raise InvalidPayload(exc.messages) from None
    except RecursionError:
        raise InvalidPayload({"_schema": ["payload is nested too deeply"]}) from None


def payload_bytes(value: Any, limit: int) -> int:
    """The UTF-8 bytes of a decoded payload's text (keys and strings; 8 per other value), a
    close lower bound of its JSON size, counted without encoding it again and given up as soon
    as it passes `limit`: a walk over what is already in memory, with no copy of it."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            # ASCII is a flag CPython keeps: its length is its size, with no encoding.
            total += len(item) if item.isascii() else len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            total += 8
    return total


class DomainTask(Task):
    """Retries transient failures 3 times with exponential backoff and jitter, then
    dead-letters; invalid payloads and refused requests are dead-lettered at once."""

    abstract = True
    acks_late = True
    # A task whose pool process died (OOM killer, segfault) is sent again as a retry, so
    # max_retries bounds it (Celery >= 5.7); then it fails with WorkerLostError and is
    # dead-lettered (_dead_letter_lost_worker). Every domain action is idempotent. Should
    # sending the retry fail, the message is requeued as before (reject_on_worker_lost).
    retry_on_worker_lost = True
    reject_on_worker_lost = True
    default_retry_delay = 1  # the worker-lost retry's delay (the others have their backoff)
    # Any Redis error reply: retry() lets through only those that mean "try later" (OOM,
    # READONLY, BUSY inside a script...); the others fail at once, as before.
    autoretry_for = (*TRANSIENT_ERRORS, redis.ResponseError)
    dont_autoretry_for = (InvalidPayload, DomainError)
    max_retries = 3
    retry_backoff = 2  # up to 2, 4, 8 s with full jitter (Celery's), capped at 30 s
    retry_backoff_max = 30
    retry_jitter = True
    soft_time_limit = 120
    time_limit = 180

    def retry(self, *args: Any, exc: BaseException | None = None,
              countdown: float | None = None, **options: Any) -> Any:
        """Celery's full jitter may draw a 0 s delay three times: with Redis just back, such
        retries all land inside the circuit breaker's closed window and fail without trying.
        A task that needs the active store waits at least past that window."""
        if isinstance(exc, redis.ResponseError) and not is_transient_reply(exc):
            raise exc  # a request Redis refuses for good: dead-lettered, not retried
        if isinstance(exc, ActiveStoreUnavailable):
            countdown = max(countdown or 0, ACTIVE_STORE_RETRY_SECONDS)
        return super().retry(*args, exc=exc, countdown=countdown, **options)

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        """A redelivered start (the broker handed the task back: its worker died, or shut
        down, holding it) is counted until it ends (after_return, on_retry clear it): one that
        finds more than MAX_REDELIVERIES such starts that never ended (their worker died under
        them) dead-letters the task instead of running it. Deliveries that never start (ETA
        tasks a warm shutdown restored) and runs that finish do not count
        (conversation.adapters.deliveries). Only redelivered tasks pay the round trips: a
        first delivery's death is the one run the count leaves out. Without Redis, it runs."""
        if not self._redelivered():
            return
        starts = self._count(task_id, "started")
        if starts is None or starts <= MAX_REDELIVERIES:
            return
        WORKER_LOST.labels("dead_lettered").inc()
        self.dead_letter(kwargs, WorkerLost(
            f"worker lost: delivered again {starts} times without finishing (its worker died "
            "each time?); dead-lettered without running"), task_id=task_id)
        raise Ignore()

    def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any,
                     einfo: Any) -> None:
        if self._redelivered():
            self._count(task_id, "finished")  # stored or failed (dead-lettered): it ended

    def _redelivered(self) -> bool:
        return bool((self.request.delivery_info or {}).get("redelivered"))

    def _count(self, task_id: str, event: Literal["started", "finished"]) -> int | None:
        """One round trip to the active store, behind its circuit breaker."""
        counter = container().deliveries
        try:
            return getattr(counter, event)(task_id, self.request.retries or 0)
        except (redis.RedisError, ActiveStoreUnavailable) as error:
            # Debug only: the breaker logs the outage once, and this would log every task.
            log.debug("could not count the starts of %s: %s", task_id, error)
            return None

    def on_retry(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if isinstance(exc, WorkerLostError):
            # In the worker's main process, once its pool process died: that start never
            # ended, and the retry is an attempt (and a count) of its own.
            WORKER_LOST.labels("retried").inc()
            log.warning("task %s[%s]: its worker process died (%s); retry %d of %s",
                        self.name, task_id, exc, (self.request.retries or 0) + 1,
                        self.max_retries)
            return
        if self._redelivered():
            self._count(task_id, "finished")  # this attempt ended; its retry counts on its own

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self.dead_letter(kwargs, exc, task_id=task_id)

    def dead_letter(
        self, kwargs: Any, exc: BaseException, *, task_id: str | None = None,
        replayable: bool = True,
    ) -> None:
        reasons = getattr(exc, "reasons", None)
        if reasons is None and isinstance(exc, DomainError):
            reasons = {"_schema": [str(exc)]}
        container().dead_letters.send(
            DeadLetter(
                task_name=self.name,
                kwargs=kwargs if isinstance(kwargs, dict) else {"args": kwargs},
                error=f"{type(exc).__name__}: {exc}"[:2000],
                queue=TASK_QUEUES.get(self.name, "unknown"),
                attempts=(self.request.retries or 0) + 1,
                reasons=reasons,
                traceback="".join(traceback.format_exception(exc, limit=-5))[-4000:],
                task_id=task_id or self.request.id,
                replayable=replayable,
            )
        )


@signals.task_failure.connect
def _dead_letter_lost_worker(
    sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
    kwargs: Any = None, **_: Any
) -> None:
    """A task whose worker died once more than its retries allow fails in the worker's main
    process, where Task.on_failure does not run: dead-letter it here, with that reason."""
    if not isinstance(sender, DomainTask) or not isinstance(exception, WorkerLostError):
        return
    WORKER_LOST.labels("dead_lettered").inc()
    sender.dead_letter(kwargs, WorkerLost(
        f"worker lost {(sender.request.retries or 0) + 1} times running this task: "
        f"{exception}"), task_id=task_id)
