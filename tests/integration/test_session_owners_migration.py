"""Migration 0009 backfills session_owners from conversations: the first tenant per session."""
from __future__ import annotations

import os
import uuid

import psycopg
import pytest

from conversation.adapters.schema_migrations import upgrade

pytestmark = pytest.mark.integration


def test_the_backfill_takes_the_first_tenant_of_each_session(postgres_server: str) -> None:
    name = f"conversation_owners_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    base = postgres_server.rpartition("/")[0]
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    try:
        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1), "0008")
        with psycopg.connect(url, autocommit=True) as connection:
            for conversation, tenant, session, at in (
                ("c1", "late", "shared", "2026-11-02T00:00:00Z"),
                ("c2", "first", "shared", "2026-11-01T00:00:00Z"),
                ("c3", "first", "shared", "2026-11-03T00:00:00Z"),
                ("c4", "other", "own", "2026-11-05T00:00:00Z"),
            ):
                connection.execute(
                    "INSERT INTO conversations (id, tenant_id, session_id, agent_id, status, "
                    "created_at, message_count) VALUES (%s, %s, %s, 'bot', 'closed', %s, 0)",
                    (conversation, tenant, session, at))
        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with psycopg.connect(url, autocommit=True) as connection:
            owners = connection.execute(
                "SELECT session_id, tenant_id FROM session_owners ORDER BY session_id").fetchall()
        assert owners == [("own", "other"), ("shared", "first")]
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
