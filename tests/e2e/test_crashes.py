"""Faults with real processes: a worker killed mid-flight, the active store's Redis stopped
during ingest, PostgreSQL stopped during a migration, hostile payloads among good ones."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from config.settings import Settings
from conversation.adapters.schema_migrations import upgrade
from conversation.adapters.postgres.schema import dead_letters, messages
from conversation.bootstrap import Container
from conversation.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.workers import (
    kill_group,
    producer,
    running_worker,
    start_worker_group,
    wait_until,
)

pytestmark = pytest.mark.e2e


def payload(session: str, i: int, tenant: str = "crash") -> dict:
    return {"tenant_id": tenant, "session_id": session, "agent_id": "bot",
            "role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}",
            "message_id": f"{session}-m{i}"}


def stored_ids(container: Container, sessions: list[str], tenant: str = "crash") -> list[str]:
    ids: list[str] = []
    for session in sessions:
        conversation_id = container.active_store.session_conversation(tenant, session)
        if conversation_id:
            ids += [m.id for m in container.active_store.messages(conversation_id)]
    return ids


def drained(broker: redis.Redis, queue: str) -> bool:
    return broker.llen(queue) == 0 and broker.hlen("unacked") == 0


def test_kill_9_a_worker_with_2000_messages_in_flight(broker_settings: Settings,
                                                      test_var_dir: Path):
    settings = broker_settings
    rabbitmq = settings.broker_url.startswith("amqp")  # type: ignore[union-attr]
    container = Container(settings)
    app = producer(settings)
    sessions = [f"k9-{s}" for s in range(20)]
    doomed = start_worker_group(settings, test_var_dir / "w-killed.log",
                                ("conversation.save",), "k9")
    try:
        for i in range(2000):
            app.send_task("conversation.save_message", kwargs=payload(sessions[i % 20], i),
                          queue="conversation.save")
        wait_until(lambda: len(stored_ids(container, sessions)) >= 100, timeout=60,
                   what="the first messages saved")
    finally:
        kill_group(doomed)
    assert len(stored_ids(container, sessions)) < 2000, "the kill came too late to test anything"
    # kombu's Redis transport takes a message off the queue (BRPOP) a moment before it files
    # it as unacknowledged: a kill -9 in that moment loses that one message. RabbitMQ has no
    # such gap: there, every message must arrive.
    allowed_loss = 0 if rabbitmq else 1
    with running_worker(settings, test_var_dir / "w-after-kill.log"):
        wait_until(lambda: len(stored_ids(container, sessions)) >= 2000 - allowed_loss,
                   timeout=60, interval=0.5, what="the messages after the restart")
        time.sleep(2 * settings.broker_visibility_timeout)  # any redelivery arrives meanwhile
    ids = stored_ids(container, sessions)
    assert len(ids) == len(set(ids)), "a message was stored twice"
    assert 2000 - allowed_loss <= len(ids) <= 2000
    app.close()
    container.close()


def test_stopping_the_active_store_during_ingest_loses_nothing(
    settings: Settings, test_var_dir: Path
) -> None:
    store = EmbeddedRedis(test_var_dir / "ingest-redis", persist=True).start()
    settings = replace(settings, redis_url=f"{store.url}/0")
    container = Container(settings)
    app = producer(settings)
    broker = redis.Redis.from_url(settings.broker_url or "")
    sessions = [f"down-{s}" for s in range(10)]
    try:
        with running_worker(settings, test_var_dir / "w-redis-down.log"):
            for i in range(600):
                app.send_task("conversation.save_message", kwargs=payload(sessions[i % 10], i),
                              queue="conversation.save")
                if i == 200:
                    wait_until(lambda: len(stored_ids(container, sessions)) >= 100,
                               what="some messages in Redis")
                    store.stop()  # the active store goes away mid-ingest
            wait_until(lambda: drained(broker, "conversation.save"), timeout=90,
                       what="the worker to finish the ingest with Redis down")
            store.start()
            for session in sessions:
                app.send_task("conversation.session_closed", queue="conversation.sessions",
                              kwargs={"tenant_id": "crash", "session_id": session})
            # Every session's conversation ends up in PostgreSQL, whole.
            def persisted() -> list[str]:
                with container.engine.connect() as connection:
                    return list(connection.scalars(
                        select(messages.c.id).where(messages.c.id.like("down-%"))))
            try:
                wait_until(lambda: len(persisted()) == 600, timeout=60, interval=0.5,
                           what="all 600 messages in PostgreSQL")
            except AssertionError as timeout:
                with container.engine.connect() as connection:
                    letters = connection.execute(select(
                        dead_letters.c.task_name, dead_letters.c.error)).all()
                in_redis = stored_ids(container, sessions)
                raise AssertionError(
                    f"{timeout}: {len(persisted())} persisted, {len(in_redis)} in Redis, "
                    f"dead letters {letters}") from None
        ids = persisted()
        assert len(ids) == len(set(ids)) == 600
        with container.engine.connect() as connection:
            conversations_per_session = connection.execute(
                select(messages.c.conversation_id).where(messages.c.id.like("down-%"))
                .distinct()).all()
        assert len(conversations_per_session) == 10  # the outage split nothing
    finally:
        app.close()
        container.close()
        store.stop()


def test_postgres_down_during_migration_then_back(settings: Settings, test_var_dir: Path):
    database = EmbeddedPostgres(test_var_dir / "migration-pg").start()
    upgrade(database.url)
    settings = replace(settings, database_url=database.url, database_replica_url=database.url)
    container = Container(settings)
    app = producer(settings)
    try:
        with running_worker(settings, test_var_dir / "w-pg-down.log"):
            for i in range(5):
                app.send_task("conversation.save_message", kwargs=payload("pgdown", i),
                              queue="conversation.save")
            conversation_id = wait_until(
                lambda: container.active_store.session_conversation("crash", "pgdown"),
                what="saved")
            wait_until(lambda: container.active_store.message_count(conversation_id) == 5,
                       what="five messages")
            database.stop()
            app.send_task("conversation.session_closed", queue="conversation.sessions",
                          kwargs={"tenant_id": "crash", "session_id": "pgdown"})
            time.sleep(settings.session_grace_seconds + 3)  # the migration fails meanwhile
            assert container.active_store.get_conversation(conversation_id) is not None
            database.start()
            app.send_task("conversation.cleanup", queue="conversation.stats")
            wait_until(lambda: container.active_store.get_conversation(conversation_id) is None,
                       timeout=60, what="the migration once PostgreSQL is back")
        # No created_at was sent, so the order is arrival's (two processes): compare as sets.
        assert sorted(m.id for m in container.repository.messages(conversation_id)) == [
            f"pgdown-m{i}" for i in range(5)]
    finally:
        app.close()
        container.close()
        database.stop()


def test_hostile_payloads_are_dead_lettered_and_good_ones_saved(
    settings: Settings, test_var_dir: Path
) -> None:
    container = Container(settings)
    app = producer(settings)
    good = lambda i: payload("hostile", i, tenant="hostile")  # noqa: E731
    hostile = [
        {**good(100), "tenant_id": 42},
        {**good(101), "role": "wizard"},
        {k: v for k, v in good(102).items() if k != "content"},
        {**good(103), "session_id": "has:colon"},
        {**good(104), "agent_id": "x" * 10_000},
        {**good(105), "content": "y" * (settings.max_message_chars + 1)},
        {**good(106), "content": "bad \ud800 surrogate"},
        {**good(107), "metadata": "not an object"},
    ]
    try:
        with running_worker(settings, test_var_dir / "w-hostile.log"):
            for i in range(4):
                app.send_task("conversation.save_message", kwargs=good(i), queue="conversation.save")
            for bad in hostile:
                app.send_task("conversation.save_message", kwargs=bad, queue="conversation.save")
            app.send_task("conversation.save_messages", queue="conversation.save",
                          kwargs={"messages": [good(50), hostile[1], good(51)]})
            app.send_task("conversation.save_messages", queue="conversation.save",
                          kwargs={"messages": [good(60)] * 100_000})
            publish_nested_1000_deep(app, good(108))
            for i in range(4, 8):
                app.send_task("conversation.save_message", kwargs=good(i), queue="conversation.save")
            wait_until(lambda: len(stored_ids(container, ["hostile"], "hostile")) == 10,
                       timeout=60, what="the ten good messages")

            def reasons() -> str:
                with container.engine.connect() as connection:
                    return " ".join(str(r) for r in connection.scalars(select(
                        dead_letters.c.reasons)))

            # 12 dead letters: 9 bad messages, one inside a batch, and the batch too long. (The
            # database is the run's: other tests' letters are there too, so wait for each.)
            needles = ("Not a valid string", "Must be one of", "Missing data",
                       "letters, digits", "at most", "UTF-8", "Not a valid mapping",
                       "nested deeper", "Length must be between 1 and 1000")
            wait_until(lambda: all(needle in reasons() for needle in needles), timeout=60,
                       what="the dead letters")
        ids = stored_ids(container, ["hostile"], "hostile")
        assert sorted(ids) == sorted(f"hostile-m{i}" for i in (*range(8), 50, 51))
    finally:
        app.close()
        container.close()


def publish_nested_1000_deep(app, kwargs: dict) -> None:  # noqa: ANN001
    """A save_message whose metadata nests 1,000 deep. Python's json cannot even encode that
    (recursion), so the message is written by hand, as a producer in another language would."""
    import json
    import uuid

    from kombu import Exchange

    metadata = '{"x": ' * 1000 + "{}" + "}" * 1000
    body = (f'[[], {json.dumps(kwargs)[:-1]}, "metadata": {metadata}}}, '
            '{"callbacks": null, "errbacks": null, "chain": null, "chord": null}]')
    task_id = str(uuid.uuid4())
    with app.producer_or_acquire() as producer:
        producer.publish(
            body, exchange=Exchange("conversation", type="direct"),
            routing_key="conversation.save", content_type="application/json",
            content_encoding="utf-8",
            headers={"lang": "py", "task": "conversation.save_message", "id": task_id,
                     "root_id": task_id, "parent_id": None, "group": None, "retries": 0,
                     "eta": None, "expires": None, "timelimit": [None, None],
                     "argsrepr": "()", "kwargsrepr": "{...}", "origin": "test"},
        )
