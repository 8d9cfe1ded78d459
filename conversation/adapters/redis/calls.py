"""Pipelines of EVALSHA calls, on standalone Redis and on a cluster."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis


def _run_pipeline(client: Any, build: Callable[[Any], None], *scripts: str) -> list[Any]:
    """Run a pipeline of EVALSHA calls (a pipeline given Script objects asks SCRIPT EXISTS on
    every execute: a round trip more). If the server lost its script cache (a restart, SCRIPT
    FLUSH), load the scripts and run it again: every script here is idempotent."""
    def run() -> list[Any]:
        if not isinstance(client, redis.Redis):
            # redis-py's cluster pipeline refuses EVALSHA: on a cluster, one call at a time,
            # each sent by the client to the node that holds its keys.
            calls = _RecordedCalls()
            build(calls)
            return calls.replay(client)
        pipe = client.pipeline(transaction=False)
        build(pipe)
        return pipe.execute(raise_on_error=False)

    replies = run()
    if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
        for script in scripts:
            client.script_load(script)
        replies = run()
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class _RecordedCalls:
    """Stands in for a pipeline: records the commands, then runs them one by one, replies (or
    errors, as a pipeline's raise_on_error=False gives them) in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))
        return record

    def replay(self, client: Any) -> list[Any]:
        replies: list[Any] = []
        for name, args, kwargs in self.calls:
            try:
                replies.append(getattr(client, name)(*args, **kwargs))
            except redis.exceptions.RedisError as exc:
                replies.append(exc)
        return replies
