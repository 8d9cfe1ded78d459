"""Migration 0010_scale (issue 18): the GIN index of message_search leads with the tenant (until
0011_search_scale replaces it), and the search ranks within message_search before joining.
The same answers either way (joined first, ranked first), page by page, filtered, and another
tenant's rows never shown."""
from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic import command

from conversation.adapters.postgres import make_engine
from conversation.adapters.schema_migrations import alembic_config, upgrade
from conversation.adapters.search_sql import SearchIndexer
from conversation.queries.search import ConversationSearch, SearchFilters

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 1, tzinfo=UTC)
LANGUAGES = ("english", "spanish")


class NoActive:
    """No conversation live in Redis: the answers are PostgreSQL's alone."""

    def active_conversations(self, tenant_id: str) -> list:
        return []


def seed(connection: psycopg.Connection) -> None:
    """Two tenants, three agents, messages naming "refund" zero to three times (ranks tie
    often, so the created_at and id order counts), over 30 days."""
    for c in range(40):
        tenant = "big" if c % 4 else "small"
        created = START + timedelta(hours=17 * c)
        connection.execute(
            "INSERT INTO conversations (id, tenant_id, session_id, agent_id, status, created_at, "
            "message_count) VALUES (%s, %s, %s, %s, 'closed', %s, 6)",
            (f"c{c}", tenant, f"s{c}", f"agent{c % 3}", created))
        for i in range(6):
            words = ["refund"] * ((c + i) % 4) + ["where is my parcel"]
            if c == 7 and i == 3:
                words.append("the purple giraffe ate my invoice")
            connection.execute(
                "INSERT INTO messages (conversation_id, id, seq, tenant_id, role, content, tokens, "
                "encoding, agent_id, created_at) VALUES (%s, %s, %s, %s, %s, %s, 5, "
                "'cl100k_base', %s, %s)",
                (f"c{c}", f"m{i}", i, tenant, "user" if i % 2 == 0 else "assistant",
                 " ".join(words), f"agent{c % 3}",
                 # Every fifth conversation's messages share one instant: ties on created_at.
                 created if c % 5 == 0 else created + timedelta(minutes=i)))


QUERIES = [
    ("refund", SearchFilters(), 0),
    ("refund", SearchFilters(), 20),
    ("refund", SearchFilters(), 40),
    ("refund parcel", SearchFilters(), 10),
    ('"purple giraffe"', SearchFilters(), 0),
    ("refund", SearchFilters(start=START + timedelta(days=5), end=START + timedelta(days=20)), 0),
    ("refund", SearchFilters(agent_id="agent1"), 0),
    ("nothing-matches-this", SearchFilters(), 0),
]


def answers(search: ConversationSearch, ranked_first: bool) -> list:
    return [
        search._persisted(tenant, q, filters, 21, offset, ranked_first=ranked_first)
        for tenant in ("big", "small")
        for q, filters, offset in QUERIES
    ]


def test_the_search_answers_the_same_rows_after_the_migration(postgres_server: str) -> None:
    name = f"conversation_scale_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    base = postgres_server.rpartition("/")[0]
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    engine = make_engine(url, pool_size=1)
    plain = f"{base}/{name}"
    try:
        upgrade(url, "0009")
        with psycopg.connect(plain, autocommit=True) as connection:
            seed(connection)
        assert SearchIndexer(engine).index_pending() == 40
        search = ConversationSearch(engine, NoActive(), LANGUAGES)  # type: ignore[arg-type]

        upgrade(url, "0010_scale")  # 0011_search_scale replaces its GIN index
        with psycopg.connect(plain, autocommit=True) as connection:
            indexes = {row[0] for row in connection.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'message_search'")}
        assert "ix_message_search_tenant_vector" in indexes
        assert "ix_message_search_vector" not in indexes
        with psycopg.connect(plain, autocommit=True) as connection:
            order = connection.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = "
                "'ix_messages_conversation_order'").fetchone()
        assert order is not None and order[0].endswith(
            "(conversation_id, tenant_id, created_at, seq, id)")
        # Today's search needs 0011_search_scale's functions: joined first (the exact answer,
        # also checked against plain SQL in test_search_window.py) and ranked first agree.
        upgrade(url)
        before = answers(search, ranked_first=False)
        assert len(before[0]) == 21 and before[2], "the pages hold hits"
        assert all(hit["conversation_id"] != "c0" for page in before[:8] for hit in page)
        assert answers(search, ranked_first=True) == before
        assert answers(search, ranked_first=False) == before

        # A row indexed under "big" whose conversation is "small"'s (no writer makes one; a
        # damaged row): never shown to "big", whichever way the search runs.
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO messages (conversation_id, id, seq, tenant_id, role, content, "
                "tokens, encoding, created_at) VALUES ('c0', 'stray', 9, 'big', 'user', "
                "'refund refund refund refund refund', 5, 'cl100k_base', %s)", (START,))
        assert SearchIndexer(engine).index_pending() == 1
        page = search._persisted("big", "refund", SearchFilters(), 21, 0)
        assert page == before[0]
        # A page whose ranked rows are all such rows: the rows after them, not an empty page.
        assert search._persisted("big", "refund", SearchFilters(), 1, 0) == before[0][:1]

        command.downgrade(alembic_config(url), "0009")
        with psycopg.connect(plain, autocommit=True) as connection:
            indexes = {row[0] for row in connection.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'message_search'")}
        assert "ix_message_search_vector" in indexes
        assert "ix_message_search_tenant_vector" not in indexes
    finally:
        engine.dispose()
        with psycopg.connect(postgres_server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_interrupted_build_is_built_again_not_kept_invalid(postgres_server: str) -> None:
    """A CREATE INDEX CONCURRENTLY that was interrupted (a lost connection, a deploy's timeout)
    leaves its index behind, INVALID: never used by a read, yet IF NOT EXISTS skipped it, and
    the upgrade then dropped the valid index it replaces. After a rerun every index is valid."""
    name = f"conversation_scale_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    base = postgres_server.rpartition("/")[0]
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    plain = f"{base}/{name}"
    try:
        upgrade(url, "0010_satisfaction_repair")
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
            # What an interrupted build leaves: the index, marked not valid.
            connection.execute("CREATE INDEX ix_message_search_tenant_vector "
                               "ON message_search USING gin (tenant_id, vector)")
            connection.execute("CREATE INDEX ix_messages_conversation_order_new "
                               "ON messages (conversation_id, tenant_id, created_at, seq, id)")
            connection.execute(
                "UPDATE pg_index SET indisvalid = false WHERE indexrelid IN "
                "('ix_message_search_tenant_vector'::regclass, "
                "'ix_messages_conversation_order_new'::regclass)")
        upgrade(url, "0010_scale")
        with psycopg.connect(plain, autocommit=True) as connection:
            found = dict(connection.execute(
                "SELECT c.relname, i.indisvalid FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname IN "
                "('ix_message_search_tenant_vector', 'ix_messages_conversation_order', "
                "'ix_messages_conversation_order_new', 'ix_message_search_vector')").fetchall())
        assert found == {"ix_message_search_tenant_vector": True,
                         "ix_messages_conversation_order": True}
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
