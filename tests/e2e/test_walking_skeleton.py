"""The whole path as upstream services and the CRM use it: tasks by name through the broker,
a real worker, Redis, the close with a short grace, PostgreSQL, and the HTTP API."""
from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from api import create_app
from config.settings import Settings
from conversation.adapters.postgres.schema import conversations, dead_letters, messages
from conversation.bootstrap import Container
from tests.workers import producer, running_worker, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(broker_settings: Settings, test_var_dir: Path, request: pytest.FixtureRequest):  # noqa: ANN201
    """A worker on the Redis broker, and on RabbitMQ where one runs (see conftest)."""
    settings = broker_settings
    log = test_var_dir / f"worker-{request.node.name}.log"
    container = Container(settings)
    app = producer(settings)
    with running_worker(settings, log):
        yield app, container
    app.close()
    container.close()


def persisted_messages(container: Container, conversation_id: str) -> list[str]:
    with container.engine.connect() as connection:
        return list(
            connection.scalars(
                select(messages.c.content)
                .where(messages.c.conversation_id == conversation_id)
                .order_by(messages.c.created_at, messages.c.seq)
            )
        )


def test_save_context_close_migrate_and_read_through_the_api(
    stack, test_var_dir: Path, request: pytest.FixtureRequest
) -> None:
    app, container = stack
    # The run shares one database: a tenant and session of this test's own (per broker).
    tenant = f"skeleton-{container.settings.redis_key_prefix.strip(':')}"
    session = f"{tenant}-ws-1"
    turns = [
        ("system", "You are the support agent of ACME."),
        ("user", "Where is my order 1042?"),
        ("assistant", "It left the warehouse this morning."),
        ("user", "Thanks! When will it arrive?"),
        ("assistant", "Tomorrow before noon."),
    ]
    for i, (role, content) in enumerate(turns):
        app.send_task(
            "conversation.save_message",
            kwargs={"tenant_id": tenant, "session_id": session, "agent_id": "support-bot",
                    "role": role, "content": content, "message_id": f"m-{i}",
                    "created_at": f"2026-11-24T10:00:{i:02d}Z"},
            queue="conversation.save",
        )
    # A redelivered duplicate changes nothing (whichever copy a worker runs first).
    app.send_task(
        "conversation.save_message",
        kwargs={"tenant_id": tenant, "session_id": session, "agent_id": "support-bot",
                "role": "user", "content": "Where is my order 1042?", "message_id": "m-1",
                "created_at": "2026-11-24T10:00:01Z"},
        queue="conversation.save",
    )
    conversation_id = wait_until(
        lambda: container.active_store.session_conversation(tenant, session),
        what="the session's conversation",
    )
    wait_until(lambda: container.active_store.message_count(conversation_id) == 5,
               what="five messages in Redis")

    context = app.send_task(
        "conversation.get_context",
        kwargs={"tenant_id": tenant, "session_id": session, "model": "gpt-4", "max_tokens": 40},
        queue="conversation.context",
    ).get(timeout=30)
    assert context["conversation_id"] == conversation_id
    assert context["window"] == "8k" and context["strategy"] == "token_buffer"
    assert context["total_messages"] == 5 and context["truncated"] is True
    assert context["messages"][0]["role"] == "system"
    assert context["messages"][-1]["content"] == "Tomorrow before noon."
    assert context["tokens"] <= 40 or len(context["messages"]) == 1

    app.send_task("conversation.session_closed",
                  kwargs={"tenant_id": tenant, "session_id": session},
                  queue="conversation.sessions")
    wait_until(lambda: persisted_messages(container, conversation_id) == [c for _, c in turns],
               timeout=30, what="the conversation in PostgreSQL")
    wait_until(lambda: container.active_store.get_conversation(conversation_id) is None,
               what="the conversation to leave Redis")
    with container.engine.connect() as connection:
        status = connection.scalar(
            select(conversations.c.status).where(conversations.c.id == conversation_id))
    assert status == "closed"

    # The same context from PostgreSQL.
    from_postgres = app.send_task(
        "conversation.get_context",
        kwargs={"tenant_id": tenant, "conversation_id": conversation_id, "model": "gpt-4",
                "max_tokens": 40},
        queue="conversation.context",
    ).get(timeout=30)
    assert from_postgres["messages"] == context["messages"]

    client = create_app(container=container).test_client()
    key = container.api_keys.create(tenant)
    headers = {"Authorization": f"Bearer {key}"}
    full = client.get(f"/api/conversations/{conversation_id}/full", headers=headers)
    assert full.status_code == 200
    assert full.json["tier"] == "postgres"
    assert [m["content"] for m in full.json["messages"]] == [c for _, c in turns]
    listed = client.get(f"/api/conversations/list/{tenant}?status=closed", headers=headers).json
    assert [item["id"] for item in listed["items"]] == [conversation_id]
    # What beat does every minute, sent by name through the broker.
    app.send_task("conversation.aggregate_stats", kwargs={}, queue="conversation.stats")

    def rolled_up() -> dict | None:
        answer = client.get(f"/api/conversations/stats/{tenant}", headers=headers).json
        return answer if answer["totals"]["conversations"] else None

    stats = wait_until(rolled_up, what="the statistics rollup")
    assert stats["totals"]["conversations"] == 1 and stats["totals"]["messages"] == 5
    assert stats["totals"]["first_response_seconds"]["median"] == pytest.approx(1.0, rel=0.011)

    # The workers' metrics, read as the API's /metrics reads every process's (multiprocess).
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    from tests.workers import metrics_dir

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir(container.settings)))
    sample = registry.get_sample_value
    assert sample("conversation_messages_saved_total", {"outcome": "saved"}) >= 5
    assert sample("conversation_context_seconds_count", {"window": "8k"}) >= 2
    assert sample("conversation_migrations_total", {"outcome": "migrated"}) >= 1
    assert sample("conversation_migration_lag_seconds_count", {}) >= 1
    # The API's own: latency by route template, and the gauges read at scrape time.
    assert REGISTRY.get_sample_value("conversation_api_request_seconds_count", {
        "endpoint": "/api/conversations/<conversation_id>/full", "method": "GET",
        "status": "200"}) >= 1
    exposition = client.get("/metrics").get_data(as_text=True)
    assert 'conversation_queue_depth{queue="conversation.dlq"}' in exposition
    assert "conversation_active_sessions 0.0" in exposition

    # The worker logs JSON lines, each with the identity of the task that wrote it.
    worker_log = test_var_dir / f"worker-{request.node.name}.log"
    lines = [json.loads(line) for line in worker_log.read_text().splitlines()
             if line.startswith("{")]
    migrated = [line for line in lines if line.get("conversation_id") == conversation_id
                and line["event"].startswith("migration of")]
    # Migrated by its second's shared timer (conversation.services.sessions).
    assert migrated and migrated[0]["task"] == "conversation.migrate_closed"
    assert migrated[0]["task_id"] and migrated[0]["level"] == "info"


def test_an_invalid_payload_is_dead_lettered_and_the_worker_keeps_going(stack) -> None:
    app, container = stack
    session = f"ws-2-{container.settings.redis_key_prefix.strip(':')}"  # this test's own
    app.send_task("conversation.save_message",
                  kwargs={"tenant_id": "skeleton:evil", "session_id": session, "agent_id": "a",
                          "role": "wizard", "content": 42},
                  queue="conversation.save")
    app.send_task("conversation.save_message",
                  kwargs={"tenant_id": "skeleton", "session_id": session, "agent_id": "a",
                          "role": "user", "content": "still here"},
                  queue="conversation.save")

    def letters() -> list:
        with container.engine.connect() as connection:
            return connection.execute(
                select(dead_letters).where(
                    dead_letters.c.task_name == "conversation.save_message",
                    dead_letters.c.kwargs["session_id"].astext == session,
                )
            ).all()

    rows = wait_until(letters, what="a dead letter")
    # The worker's counter, read as the API's /metrics reads every process's metrics.
    from prometheus_client import CollectorRegistry, multiprocess

    from tests.workers import metrics_dir

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir(container.settings)))
    assert registry.get_sample_value(
        "conversation_dead_letters_total", {"task": "conversation.save_message"}) >= 1
    reasons = rows[0].reasons
    assert set(reasons) == {"tenant_id", "role", "content"}
    assert rows[0].attempts == 1 and rows[0].queue == "conversation.save"
    conversation_id = wait_until(
        lambda: container.active_store.session_conversation("skeleton", session),
        what="the valid message")
    assert [m.content for m in container.active_store.messages(conversation_id)] == ["still here"]


def test_a_worker_serves_its_own_metrics_when_asked(settings: Settings, test_var_dir: Path,
                                                    tmp_path: Path) -> None:
    """METRICS_PORT: the worker's main process serves what its pool children count (the way
    workers in containers are scraped, apart from the API)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "metrics").mkdir()  # as an emptyDir volume is, in deploy/k8s
    env = {"METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    app = producer(settings)
    try:
        with running_worker(settings, test_var_dir / "worker-metrics.log", extra_env=env):
            app.send_task("conversation.save_message", queue="conversation.save", kwargs={
                "tenant_id": "skeleton", "session_id": "ws-metrics", "agent_id": "a",
                "role": "user", "content": "count me"})

            def saved() -> bool:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    body = r.read().decode()
                return 'conversation_messages_saved_total{outcome="saved"} 1.0' in body

            wait_until(saved, what="the worker's metrics to count the message")
    finally:
        app.close()
