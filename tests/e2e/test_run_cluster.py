"""`conversation run` with the active store on a Redis Cluster (three masters, started here),
RabbitMQ as the broker (the machine's, in a virtual host of the test's own) and beat on a plain
Redis of its own (BEAT_REDIS_URL): save, context, close, migrate; beat keeps scheduling; the
keys spread over the masters. Skipped where no RabbitMQ server runs."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from config.settings import PROJECT_ROOT, Settings
from conversation.bootstrap import Container
from tests.e2e.conftest import _rabbitmq
from tests.e2e.test_run_faults import SENDING, conversation_run
from tests.integration.test_redis_cluster import cluster_url  # noqa: F401  (a fixture)
from tests.workers import producer, settings_env, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def rabbitmq_vhost() -> Iterator[str]:
    vhost = f"conversation_run_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if not _rabbitmq(["add_vhost", vhost]):
        pytest.skip("no RabbitMQ server (127.0.0.1:5672) with rabbitmqctl on this machine")
    try:
        _rabbitmq(["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmq(["delete_vhost", vhost])


def payload(session: str, i: int) -> dict:
    return {"tenant_id": "runcluster", "session_id": session, "agent_id": "bot",
            "role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}",
            "message_id": f"{session}-m{i}",
            "created_at": f"2026-11-24T10:00:{i:02d}.000000Z"}


def test_conversation_run_on_a_cluster_with_rabbitmq(
    settings: Settings, cluster_url: str, rabbitmq_vhost: str, redis_server: str,  # noqa: F811
    test_var_dir: Path,
) -> None:
    settings = replace(settings, redis_url=cluster_url, redis_cluster=True,
                       broker_url=rabbitmq_vhost, beat_redis_url=f"{redis_server}/3",
                       session_grace_seconds=1, beat_interval_seconds=1, beat_lock_seconds=3)
    run_dir = test_var_dir / f"run-cluster-{settings.redis_key_prefix.strip(':')}"
    container = Container(settings)
    app = producer(settings)
    sessions = [f"rc{s}" for s in range(30)]
    try:
        with conversation_run(settings, run_dir) as stack:
            beat = stack.child("beat")
            for i in range(4):
                for session in sessions:
                    app.send_task("conversation.save_message", kwargs=payload(session, i),
                                  queue="conversation.save")
            wait_until(lambda: all(
                (c := container.active_store.session_conversation("runcluster", s))
                and container.active_store.message_count(c) == 4 for s in sessions),
                timeout=60, interval=0.5, what="every message in the cluster")

            # The keys spread over the three masters (one hash slot per conversation).
            cluster = RedisCluster.from_url(cluster_url)
            per_master = {
                node.name: sum(1 for _ in node.redis_connection.scan_iter(
                    match=f"{settings.redis_key_prefix}*", count=1000))
                for node in cluster.get_primaries()
            }
            cluster.close()
            assert len(per_master) == 3 and all(per_master.values()), per_master

            context = app.send_task(
                "conversation.get_context", queue="conversation.context",
                kwargs={"tenant_id": "runcluster", "session_id": "rc7", "window": "8k"},
            ).get(timeout=60)
            assert [m["content"] for m in context["messages"]] == [
                f"message {i}" for i in range(4)]

            conversation_ids = {s: container.active_store.session_conversation("runcluster", s)
                                for s in sessions}
            for session in sessions:
                app.send_task("conversation.session_closed", queue="conversation.sessions",
                              kwargs={"tenant_id": "runcluster", "session_id": session})
            wait_until(lambda: all(container.active_store.get_conversation(c) is None
                                   for c in conversation_ids.values()),
                       timeout=90, interval=0.5, what="every conversation migrated")
            for session, conversation_id in conversation_ids.items():
                assert [m.id for m in container.repository.messages(conversation_id)] == [
                    f"{session}-m{i}" for i in range(4)]

            # Beat keeps scheduling on its plain Redis, the same process all along.
            sent = stack.text().count(SENDING)
            wait_until(lambda: stack.text().count(SENDING) >= sent + 9, timeout=30,
                       what="beat to keep sending")
            assert beat is not None and stack.child("beat").pid == beat.pid
            assert stack.restarts() == [] and "MovedError" not in stack.text()
            plain = redis.Redis.from_url(settings.beat_redis_url or "")
            assert plain.exists(f"{settings.redis_key_prefix}redbeat::lock")
            plain.close()
        assert stack.process.returncode == 0
    finally:
        app.close()
        container.close()


def test_beat_refuses_a_cluster_node(settings: Settings, cluster_url: str) -> None:  # noqa: F811
    env = settings_env(replace(settings, beat_redis_url=cluster_url))
    done = subprocess.run([sys.executable, "-m", "conversation.cli", "beat"], check=False,
                          cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode != 0
    assert b"is a Redis Cluster node" in done.stderr
