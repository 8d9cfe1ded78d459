"""Pipelines of EVALSHA calls, on standalone Redis and on a cluster."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis


def _run_pipeline(client: Any, build: Callable[[Any], None], *scripts: str) -> list[Any]:
    """Run a pipeline of EVALSHA calls (a pipeline given Script objects asks SCRIPT EXISTS on
    every execute: a round trip more). If the server lost its script cache (a restart, SCRIPT
    FLUSH), load the scripts and run again the calls it refused, and only those: another
    client can load the scripts while this pipeline runs, and a call that ran must keep its
    reply (run twice, a finished migration answers "not applied", a save "duplicate")."""
    calls = _RecordedCalls()
    build(calls)
    replies = _send(client, calls.calls)
    refused = [i for i, reply in enumerate(replies)
               if isinstance(reply, redis.exceptions.NoScriptError)]
    if refused:
        for script in scripts:
            client.script_load(script)
        again = _send(client, [calls.calls[i] for i in refused])
        for i, reply in zip(refused, again, strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _send(client: Any, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
    """The calls' replies in order, errors as values (a pipeline's raise_on_error=False)."""
    if not isinstance(client, redis.Redis):
        # redis-py's cluster pipeline refuses EVALSHA: on a cluster, one call at a time,
        # each sent by the client to the node that holds its keys.
        replies: list[Any] = []
        for name, args, kwargs in calls:
            try:
                replies.append(getattr(client, name)(*args, **kwargs))
            except redis.exceptions.RedisError as exc:
                replies.append(exc)
        return replies
    if len(calls) == 1:
        # One call (a save; a close, release or finish of one): sent as itself, without a pipeline object to build and reset
        # (~8 us a call, measured); its error is a value all the same.
        name, args, kwargs = calls[0]
        try:
            return [getattr(client, name)(*args, **kwargs)]
        except redis.exceptions.ResponseError as exc:
            return [exc]
    pipe = client.pipeline(transaction=False)
    for name, args, kwargs in calls:
        getattr(pipe, name)(*args, **kwargs)
    return list(pipe.execute(raise_on_error=False))


class _RecordedCalls:
    """Stands in for a pipeline: records the commands, to send (and send again) by `_send`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))
        return record
