"""Migration 0010_satisfaction_repair: days whose stored satisfaction_sum is not finite (a
rating of 1e308 was accepted before issue 15's -100..100 check, and one such rating made the
day's average null for good) are noted for the statistics task to recompute, which now
ignores off-scale ratings. Days that are fine are left alone."""
from __future__ import annotations

import os
import uuid

import psycopg
import pytest

from conversation.adapters.schema_migrations import upgrade

pytestmark = pytest.mark.integration

INSERT_CONVERSATION = (
    "INSERT INTO conversations (id, tenant_id, session_id, agent_id, status, created_at) "
    "VALUES (%s, %s, %s, 'bot', 'closed', %s)")
INSERT_STATS = (
    "INSERT INTO conversation_stats (conversation_id, tenant_id, agent_id, message_count, "
    "user_messages, assistant_messages, tokens_in, tokens_out, duration, satisfaction, "
    "started_at, closed_at) VALUES (%s, %s, 'bot', 2, 1, 1, 3, 3, 60, %s, %s, %s)")
INSERT_DAY = (
    "INSERT INTO stats_daily (tenant_id, day, agent_id, model, rated, satisfaction_sum, "
    "updated_at) VALUES (%s, %s, '*', '*', 1, %s, now())")


def test_days_with_an_infinite_satisfaction_sum_are_noted_for_recomputing(
        postgres_server: str) -> None:
    name = f"conversation_satisfaction_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    base = postgres_server.rpartition("/")[0]
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    try:
        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1), "0009")
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(INSERT_DAY, ("acme", "2026-11-01", float("inf")))
            connection.execute(INSERT_DAY, ("acme", "2026-11-02", 80.0))
            connection.execute(INSERT_DAY, ("globex", "2026-11-03", float("-inf")))
            connection.execute(INSERT_DAY, ("globex", "2026-11-04", float("nan")))
            connection.execute("DELETE FROM stats_changes")
        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with psycopg.connect(url, autocommit=True) as connection:
            noted = connection.execute(
                "SELECT tenant_id, day::text FROM stats_changes ORDER BY tenant_id, day").fetchall()
        assert noted == [("acme", "2026-11-01"), ("globex", "2026-11-03"),
                         ("globex", "2026-11-04")]
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_days_with_a_finite_off_scale_rating_are_noted_too(postgres_server: str) -> None:
    """A rating of 500 (or -1e6) accepted before the check leaves a finite sum and a wrong
    average: the rollup now ignores it, but only on a day it recomputes. Such days are found
    by the ratings stored in conversation_stats, not by the sum."""
    name = f"conversation_satisfaction_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    base = postgres_server.rpartition("/")[0]
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    try:
        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1), "0009")
        with psycopg.connect(url, autocommit=True) as connection:
            rows = [("c-high", "acme", "2026-11-05", 500.0), ("c-low", "acme", "2026-11-06", -1e6),
                    ("c-fine", "acme", "2026-11-07", 80.0), ("c-none", "acme", "2026-11-08", None)]
            for conversation_id, tenant, day, rating in rows:
                at = f"{day}T23:50:00+00:00"
                connection.execute(INSERT_CONVERSATION, (conversation_id, tenant, "s", at))
                connection.execute(INSERT_STATS, (conversation_id, tenant, rating, at,
                                                  f"{day}T23:59:59+00:00"))
                connection.execute(INSERT_DAY, (tenant, day, rating or 0.0))
            connection.execute("DELETE FROM stats_changes")
        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with psycopg.connect(url, autocommit=True) as connection:
            noted = connection.execute(
                "SELECT DISTINCT tenant_id, day::text FROM stats_changes ORDER BY 1, 2"
            ).fetchall()
        assert noted == [("acme", "2026-11-05"), ("acme", "2026-11-06")]
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
