"""The service's Celery app with timestamps at each step of a result-returning task, for
bench/context_timeline.py (never used by the service): what a get_context spends where."""
from __future__ import annotations

import os
import threading
import time
from typing import Any

import orjson
import redis
from celery import signals
from celery.app import trace

import bench.noop_app  # noqa: F401  (bench.echo: the anchor, on the same worker)
from conversation.adapters.redis.arrivals import ArrivalListener, RedisArrivals
from conversation.services.context import ContextBuilder
from conversation.services.save import MessageSaver
from tasks import conversation_tasks
from tasks.app import app

STAMPS_KEY = "bench:probe:stamps"
_stamps: dict[str, dict[str, float]] = {}
_current: list[str] = [""]


def stamp(name: str, task_id: str | None = None) -> None:
    """The first time of `name` in the task (a wait looks and blocks more than once)."""
    _stamps.setdefault(task_id or _current[0], {}).setdefault(name, time.time())


def _flush() -> None:
    if not _stamps:
        return
    client = redis.Redis.from_url(app.conf.result_backend)
    client.rpush(STAMPS_KEY, *(orjson.dumps({"id": k, "pid": os.getpid(), **v})
                               for k, v in _stamps.items()))
    client.close()
    _stamps.clear()


@signals.task_received.connect
def _received(request: Any = None, **_: Any) -> None:  # the worker's main process
    stamp("received", request.id)


@signals.worker_ready.connect
def _flusher(**_: Any) -> None:
    def loop() -> None:
        while True:
            time.sleep(1.0)
            try:
                _flush()
            except Exception as exc:  # noqa: BLE001 - a probe: say so, keep going
                print(f"probe: could not push stamps: {exc}", flush=True)
    threading.Thread(target=loop, daemon=True).start()


@signals.task_prerun.connect
def _prerun(task_id: str | None = None, **_: Any) -> None:
    _current[0] = task_id or ""
    stamp("prerun")


@signals.task_success.connect
def _success(**_: Any) -> None:
    stamp("success_signal")


@signals.task_postrun.connect
def _postrun(**_: Any) -> None:
    stamp("postrun")


def _wrap(owner: Any, attr: str, label: str) -> None:
    original = getattr(owner, attr)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        stamp(f"{label}_start")
        try:
            return original(*args, **kwargs)
        finally:
            stamp(f"{label}_end")

    setattr(owner, attr, wrapped)


_wrap(conversation_tasks, "validated", "validate")
_wrap(ContextBuilder, "get_context", "service")
# The wait (wait_for_message_id) and the save it waits for.
_wrap(ContextBuilder, "_wait_for", "wait")
_wrap(ContextBuilder, "_stored", "look")
_wrap(ContextBuilder, "_build", "build")
_wrap(RedisArrivals, "listen_for", "subscribe")
_wrap(ArrivalListener, "wait", "block")
_wrap(ArrivalListener, "close", "unsubscribe")
_wrap(MessageSaver, "save", "save")
_wrap(trace, "saferepr", "saferepr")


@signals.worker_process_init.connect
def _backend_probes(**_: Any) -> None:
    backend = app.backend
    _wrap(backend, "mark_as_done", "mark_done")
    _wrap(backend, "encode", "encode")
    _wrap(backend, "get", "backend_get")
    _wrap(backend, "set", "backend_set")


@app.task(name="bench.probe_flush", ignore_result=False)
def probe_flush() -> int:
    """Push this process's stamps (the pool's processes keep theirs until asked)."""
    count = len(_stamps)
    _flush()
    return count
