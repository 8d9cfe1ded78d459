"""Shared fixtures. Integration and e2e tests run on real servers: embedded Redis and
PostgreSQL started for the run under var/test-<pid>/, or the servers named by TEST_REDIS_URL and
TEST_DATABASE_URL (a fresh database is created on that server and dropped afterwards)."""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis

from config.settings import PROJECT_ROOT, Settings
from conversation.embedded import EmbeddedPostgres, EmbeddedRedis


@pytest.fixture(scope="session")
def test_var_dir() -> Iterator[Path]:
    path = PROJECT_ROOT / "var" / f"test-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    if not os.environ.get("KEEP_TEST_VAR"):  # KEEP_TEST_VAR=1 keeps the workers' logs
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(test_var_dir: Path) -> Iterator[str]:
    """Base URL of a Redis server (no database number)."""
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        yield given.rstrip("/")
        return
    server = EmbeddedRedis(test_var_dir / "redis", persist=False).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(test_var_dir: Path) -> Iterator[str]:
    """libpq URL of the server's maintenance database."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given.replace("postgresql+psycopg://", "postgresql://")
        return
    server = EmbeddedPostgres(test_var_dir / "postgres", database="postgres").start()
    yield f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    server.stop()


def _database_url(server: str, name: str) -> str:
    base, _, _ = server.rpartition("/")
    return f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


@contextmanager
def migrated_database(server: str, purpose: str) -> Iterator[str]:
    """A database of its own on the server, migrated to head by Alembic, dropped afterwards."""
    from conversation.adapters.schema_migrations import upgrade

    name = f"conversation_{purpose}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(server, name)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(postgres_server: str) -> Iterator[str]:
    """The run's own database."""
    with migrated_database(postgres_server, "test") as url:
        yield url


@pytest.fixture
def settings(redis_server: str, database_url: str, test_var_dir: Path) -> Settings:
    """Settings for one test: its own Redis key prefix, so tests never see each other's keys,
    and an empty broker and result backend (DBs 1 and 2): tasks a test left behind, or a
    killed worker's unacknowledged ones, must not reach the next test's workers. Session ids
    are owned across tenants in PostgreSQL (session_owners), and tests name sessions within
    their own key prefix (`s1` for each test's tenant): each test starts with no session
    owned, as it starts with no Redis key of its own."""
    for db in (1, 2):
        client = redis.Redis.from_url(f"{redis_server}/{db}")
        client.flushdb()
        client.close()
    with psycopg.connect(database_url.replace("+psycopg", "", 1), autocommit=True) as connection:
        connection.execute("DELETE FROM session_owners")
    return Settings(
        redis_url=f"{redis_server}/0",
        redis_key_prefix=f"t{uuid.uuid4().hex[:8]}:",
        broker_url=f"{redis_server}/1",
        result_backend=f"{redis_server}/2",
        database_url=database_url,
        database_replica_url=database_url,
        session_grace_seconds=1,
        var_dir=test_var_dir,
    )


@pytest.fixture
def own_redis(test_var_dir: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own, with persistence, that the test may stop and restart on
    the same port (an outage of the active store); stopped after the test."""
    server = EmbeddedRedis(test_var_dir / f"own-redis-{uuid.uuid4().hex[:6]}", persist=True).start()
    yield server
    server.stop()
