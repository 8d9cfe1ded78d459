"""The list's pages on a database whose collation is not code point order (en_US, ICU: the
default of most distributions' PostgreSQL).

The list merges Redis's conversations and PostgreSQL's in Python, newest first by
(created_at, id), and the cursor is the last listed key. With the ids compared in the
database's collation ("a1" < "B1" in English, "B1" < "a1" by code point), conversations that
share a created_at (a batch's one clock, an import with explicit dates) were listed in one
order and paged in the other: a cursor after "a1" left "B1" out of every page. The query
compares ids by code point (COLLATE "C") whatever the database's collation."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import insert

from config.settings import Settings
from conversation.adapters.postgres.schema import conversations
from conversation.bootstrap import Container
from conversation.domain.messages import parse_timestamp
from conversation.queries.listing import ListFilters
from tests.conftest import migrated_database

pytestmark = pytest.mark.integration

# The embedded PostgreSQL has only C collations; this machine's own server has ICU's.
COLLATING_SERVER = os.environ.get("COLLATING_DATABASE_URL",
                                  "postgresql://postgres@127.0.0.1:5432/postgres")
ENGLISH = "en-x-icu"


@pytest.fixture
def english_ids(settings: Settings) -> Iterator[Container]:
    try:
        with psycopg.connect(COLLATING_SERVER, connect_timeout=3) as connection:
            has_icu = connection.execute(
                "SELECT 1 FROM pg_collation WHERE collname = %s", (ENGLISH,)).fetchone()
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL with ICU collations at {COLLATING_SERVER}: {error}")
    if not has_icu:
        pytest.skip(f"{COLLATING_SERVER} has no {ENGLISH} collation")
    with migrated_database(COLLATING_SERVER, "collation") as url:
        with psycopg.connect(url.replace("+psycopg", "", 1), autocommit=True) as connection:
            connection.execute(
                f'ALTER TABLE conversations ALTER COLUMN id TYPE varchar(128) COLLATE "{ENGLISH}"')
        container = Container(dataclasses.replace(settings, database_url=url,
                                                  database_replica_url=url))
        yield container
        container.close()


def test_pages_list_every_conversation_once_when_created_at_ties(english_ids) -> None:
    container = english_ids
    same_instant = parse_timestamp("2026-11-20T10:00:00Z")
    ids = ["a1", "B1", "c1", "D1", "e-1", "E_1"]
    with container.engine.begin() as connection:
        connection.execute(insert(conversations), [
            {"id": cid, "tenant_id": "acme", "session_id": f"s-{cid}", "agent_id": "bot",
             "status": "closed", "created_at": same_instant, "closed_at": same_instant}
            for cid in ids])

    listed, after = [], None
    for _ in range(len(ids) + 1):
        page = container.queries.listing.list_conversations("acme", ListFilters(), 1, after)
        listed += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        last = page["items"][-1]
        after = (last["created_at"], last["id"])

    assert listed == sorted(ids, reverse=True)  # newest first, ties by code point, each once
