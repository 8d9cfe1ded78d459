"""A pipeline of EVALSHA calls after Redis lost its script cache (a restart, SCRIPT FLUSH).

While the pipeline runs, another client can load the scripts (each worker reloads on its
own): the first calls come back NOSCRIPT, the later ones run. Running the whole pipeline
again gave the calls that had run a second reply of their own ("not applied" for a finished
migration, "duplicate" for a save): CI saw a migration report conversations it had just moved
as not active, their sessions left behind in Redis. Only the refused calls go again."""
from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from conversation.adapters.redis.calls import _run_pipeline

COUNT = "return redis.call('INCR', KEYS[1])"  # not idempotent: a second run answers 2


@pytest.mark.parametrize("cluster_path", [False, True], ids=["pipeline", "one-by-one"])
def test_only_the_calls_refused_for_a_lost_script_run_again(monkeypatch, cluster_path) -> None:
    client = fakeredis.FakeRedis()
    sha = client.script_load(COUNT)
    client.script_flush()
    if cluster_path:
        # The cluster client's path (one call at a time), taken for any non-Redis client.
        monkeypatch.setattr("conversation.adapters.redis.calls.redis.Redis", type(None))

    def build(pipe: Any) -> None:
        pipe.evalsha(sha, 1, "first")       # NOSCRIPT: the cache is empty
        pipe.script_load(COUNT)             # another worker reloads it meanwhile
        pipe.evalsha(sha, 1, "second")      # runs

    replies = _run_pipeline(client, build, COUNT)

    assert [int(replies[0]), int(replies[2])] == [1, 1]
    assert (int(client.get("first")), int(client.get("second"))) == (1, 1)


def test_a_pipeline_without_a_lost_script_runs_once() -> None:
    client = fakeredis.FakeRedis()
    sha = client.script_load(COUNT)

    replies = _run_pipeline(client, lambda pipe: pipe.evalsha(sha, 1, "only"), COUNT)

    assert [int(r) for r in replies] == [1] and int(client.get("only")) == 1


def test_a_lone_call_after_a_lost_script_cache_runs_once() -> None:
    """A pipeline of one call is sent without a Pipeline object: its NOSCRIPT comes back as a
    value all the same, the script is loaded, and the call runs once."""
    client = fakeredis.FakeRedis()
    sha = client.script_load(COUNT)
    client.script_flush()

    replies = _run_pipeline(client, lambda pipe: pipe.evalsha(sha, 1, "alone"), COUNT)

    assert [int(r) for r in replies] == [1] and int(client.get("alone")) == 1
