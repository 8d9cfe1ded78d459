"""The order of the search's hits (issue 18, migration 0011_search_scale): the tenant's newest
`rank_window` matches by relevance, then every older match newest first; the same answer
whichever way the newest matches are found (the walk newest first, a walk that falls short,
the GIN index, every match joined first), with filters, pages across the window's edge,
messages not indexed yet, and another tenant's newer matches."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversation.adapters.postgres import make_engine
from conversation.adapters.schema_migrations import alembic_config
from conversation.adapters.search_sql import SearchIndexer
from conversation.queries.search import ConversationSearch, SearchFilters
from tests.conftest import migrated_database

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 1, tzinfo=UTC)
LANGUAGES = ("english", "spanish")
WINDOW = 8
LONG = "z" * 230


class NoActive:
    def active_conversations(self, tenant_id: str) -> list:
        return []


def insert(connection: psycopg.Connection, tenant: str, conversation: str, message: str,
           content: str, at: datetime, agent: str = "agent0") -> None:
    connection.execute(
        "INSERT INTO conversations (id, tenant_id, session_id, agent_id, status, created_at, "
        "message_count) VALUES (%s, %s, %s, %s, 'closed', %s, 1) ON CONFLICT DO NOTHING",
        (conversation, tenant, f"s-{conversation}", agent, at))
    connection.execute(
        "INSERT INTO messages (conversation_id, id, seq, tenant_id, role, content, tokens, "
        "encoding, agent_id, created_at) VALUES (%s, %s, 0, %s, 'user', %s, 5, 'cl100k_base', "
        "%s, %s)", (conversation, message, tenant, content, agent, at))


def seed(connection: psycopg.Connection) -> None:
    """Tenant "big": 40 conversations of 3 messages over 40 days, "refund" said 0 to 4 times
    (the oldest say it most: the best ranked are not the newest), ties on created_at in every
    fifth conversation, the rare phrase twice; two agents. Tenant "other": newer matches, more
    relevant still."""
    for c in range(40):
        at = START + timedelta(days=c)
        for i in range(3):
            times = (4 - c // 10 + i) % 5
            words = ["refund"] * times + ["where is my parcel"]
            if c in (3, 31) and i == 1:
                words.append("the purple giraffe ate my invoice")
            insert(connection, "big", f"c{c:02d}", f"m{i}", " ".join(words),
                   at if c % 5 == 0 else at + timedelta(minutes=i), f"agent{c % 2}")
    for c in range(5):
        insert(connection, "other", f"o{c}", "m0", "refund refund refund refund refund",
               START + timedelta(days=50 + c))
    # Words the index's keys treat with care (0011_search_scale): quotes, a backslash, a word
    # longer than a key keeps (200 characters: two that share those differ after), a hyphen.
    odd = ["O'Neil's back\\slash order", LONG + "x refund", LONG + "y", "e-mail refund"]
    for c, content in enumerate(odd):
        insert(connection, "big", f"x{c}", "m0", content, START + timedelta(days=3, hours=c))
        insert(connection, "other", f"y{c}", "m0", content, START + timedelta(days=60 + c))


@pytest.fixture
def database(postgres_server: str) -> Iterator[tuple[str, Any]]:
    with migrated_database(postgres_server, "window") as url:
        engine = make_engine(url, pool_size=1)
        plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(plain, autocommit=True) as connection:
            seed(connection)
        assert SearchIndexer(engine).index_pending() == 53
        try:
            yield plain, engine
        finally:
            engine.dispose()


def searches(engine: Any) -> dict[str, ConversationSearch]:
    """The same search, its newest matches found each way (see ConversationSearch)."""
    def make(sample: int, walk: int) -> ConversationSearch:
        return ConversationSearch(engine, NoActive(), LANGUAGES,  # type: ignore[arg-type]
                                  rank_window=WINDOW, sample_rows=sample, walk_rows=walk)
    # The walk covering the whole tenant; a walk of the 8 newest rows (enough for a first page
    # of "refund", short of a deeper one or of a filtered one); the GIN index alone.
    return {"walk": make(50, 1_000), "short walk": make(1, WINDOW), "gin": make(50, 0)}


def expected(plain: str, tenant: str, q: str, filters: SearchFilters) -> list[tuple[str, str]]:
    """Every match, by the promise: the newest WINDOW by rank (then newest), then the rest
    newest first (ties on created_at by conversation and message id)."""
    where, params = "", {"t": tenant, "q": q}
    if filters.start:
        where += " AND m.created_at >= %(start)s"
        params["start"] = filters.start  # type: ignore[assignment]
    if filters.end:
        where += " AND m.created_at < %(end)s"
        params["end"] = filters.end  # type: ignore[assignment]
    if filters.agent_id:
        where += " AND c.agent_id = %(agent)s"
        params["agent"] = filters.agent_id
    query = ("websearch_to_tsquery('english', %(q)s) || websearch_to_tsquery('spanish', %(q)s)")
    with psycopg.connect(plain) as connection:
        rows = connection.execute(
            f"SELECT m.conversation_id, m.id, m.created_at, "
            f"ts_rank_cd(message_search_vector(m.content), {query}) "
            f"FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            f"WHERE m.tenant_id = %(t)s AND c.tenant_id = %(t)s "
            f"AND message_search_vector(m.content) @@ ({query}) {where} "
            f"ORDER BY m.created_at DESC, m.conversation_id, m.id", params).fetchall()
    newest = sorted(enumerate(rows[:WINDOW]), key=lambda item: (-item[1][3], item[0]))
    return [(row[0], row[1]) for _, row in newest] + [(row[0], row[1]) for row in rows[WINDOW:]]


def pages(search: ConversationSearch, tenant: str, q: str, filters: SearchFilters,
          limit: int, ranked_first: bool = True) -> list[tuple[str, str]]:
    """Every hit, page after page from offset 0 (the cursor's offsets)."""
    seen: list[tuple[str, str]] = []
    for offset in range(0, 200, limit):
        page = search._persisted(tenant, q, filters, limit, offset, ranked_first=ranked_first)
        seen += [(hit["conversation_id"], hit["message_id"]) for hit in page]
        if len(page) < limit:
            break
    return seen


QUERIES = [
    ("big", "refund", SearchFilters()),
    ("big", "refund parcel", SearchFilters()),
    ("big", '"purple giraffe"', SearchFilters()),
    ("big", "refund", SearchFilters(start=START + timedelta(days=5),
                                    end=START + timedelta(days=20))),
    ("big", "refund", SearchFilters(agent_id="agent1")),
    ("big", "nothing-matches-this", SearchFilters()),
    ("other", "refund", SearchFilters()),
    # Negations alone (no index key: every row of the tenant is a candidate), a phrase under a
    # negation, quotes, a backslash, long words, a hyphenated word.
    ("big", "-refund", SearchFilters()),
    ("big", "refund or -parcel", SearchFilters()),
    ("big", 'parcel -"purple giraffe"', SearchFilters()),
    ("big", "o'neil", SearchFilters()),
    ("big", '"back\\slash"', SearchFilters()),
    ("big", LONG + "x", SearchFilters()),
    ("big", LONG + "y or e-mail", SearchFilters()),
    ("big", "e-mail", SearchFilters()),
]


def test_the_newest_matches_by_relevance_then_the_older_newest_first(database) -> None:
    plain, engine = database
    search = searches(engine)["walk"]
    page = search._persisted("big", "refund", SearchFilters(), 20, 0)
    ids = [(hit["conversation_id"], hit["message_id"]) for hit in page]
    assert ids == expected(plain, "big", "refund", SearchFilters())[:20]
    ranked, older = page[:WINDOW], page[WINDOW:]
    # The window: the tenant's newest matches, by relevance (then newest).
    assert all(hit["conversation_id"] >= "c35" for hit in ranked)
    assert [hit["rank"] for hit in ranked] == sorted((hit["rank"] for hit in ranked),
                                                     reverse=True)
    assert ranked[0]["rank"] > ranked[-1]["rank"]
    # The rest: newest first, older than any of the window, whatever their rank (the oldest
    # say "refund" most: the best ranked of all are not on this page).
    assert [hit["created_at"] for hit in older] == sorted(
        (hit["created_at"] for hit in older), reverse=True)
    assert max(hit["created_at"] for hit in older) <= min(hit["created_at"] for hit in ranked)
    every = search._persisted("big", "refund", SearchFilters(), 200, 0)
    assert max(hit["rank"] for hit in every) > ranked[0]["rank"]  # older than the window


@pytest.mark.parametrize("limit", [3, 5, 21])
def test_every_way_gives_the_same_pages_across_the_windows_edge(database, limit: int) -> None:
    plain, engine = database
    ways = searches(engine)
    for tenant, q, filters in QUERIES:
        want = expected(plain, tenant, q, filters)
        assert want or q == "nothing-matches-this", q
        for name, search in ways.items():
            assert pages(search, tenant, q, filters, limit) == want, (name, q, filters)
        assert pages(ways["walk"], tenant, q, filters, limit, ranked_first=False) == want, q
        # Any offset answers the same rows as the pages before it reached (not only multiples).
        odd = ways["gin"]._persisted(tenant, q, filters, 4, WINDOW - 2)
        assert [(h["conversation_id"], h["message_id"]) for h in odd] == want[
            WINDOW - 2:WINDOW + 2]
    assert len(expected(plain, "big", "refund", SearchFilters())) > 3 * WINDOW
    assert not any(c.startswith("o") for c, _ in expected(plain, "big", "refund",
                                                          SearchFilters()))


def test_messages_not_indexed_yet_take_their_place_in_the_window(database) -> None:
    plain, engine = database
    with psycopg.connect(plain, autocommit=True) as connection:
        insert(connection, "big", "c99", "late", "refund", START + timedelta(days=45))
        insert(connection, "big", "c98", "late", "refund " * 6, START + timedelta(days=44))
        # Another tenant's newest matches, not indexed either: never shown, take no place.
        insert(connection, "other", "o99", "late", "refund " * 9, START + timedelta(days=46))
    want = expected(plain, "big", "refund", SearchFilters())
    assert ("c99", "late") in want[:WINDOW] and ("c98", "late") == want[0]
    for name, search in searches(engine).items():
        assert pages(search, "big", "refund", SearchFilters(), 5) == want, name
    assert SearchIndexer(engine).index_pending() == 3
    for name, search in searches(engine).items():
        assert pages(search, "big", "refund", SearchFilters(), 5) == want, name


def test_the_migration_adds_and_removes_the_recency_index(database) -> None:
    plain, _ = database
    url = plain.replace("postgresql://", "postgresql+psycopg://", 1)

    def valid() -> dict[str, bool]:
        with psycopg.connect(plain, autocommit=True) as connection:
            return dict(connection.execute(
                "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c "
                "ON c.oid = i.indexrelid WHERE c.relname = 'ix_message_search_tenant_created'"
            ).fetchall())

    assert valid() == {"ix_message_search_tenant_created": True}
    command.downgrade(alembic_config(url), "0010_scale")
    assert valid() == {}
    # A message of "other" under a conversation of "big", indexed by an older indexer: the
    # upgrade removes it from message_search (the search relies on none being there).
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO messages (conversation_id, id, seq, tenant_id, role, content, tokens, "
            "encoding, created_at) VALUES ('c39', 'stray', 9, 'other', 'user', 'refund', 5, "
            "'cl100k_base', %s)", (START + timedelta(days=90),))
        connection.execute(
            "INSERT INTO message_search (conversation_id, message_id, tenant_id, created_at, "
            "vector) SELECT conversation_id, id, tenant_id, created_at, "
            "message_search_vector(content) FROM messages WHERE id = 'stray'")
    # What an interrupted CREATE INDEX CONCURRENTLY leaves: the index, not valid.
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("CREATE INDEX ix_message_search_tenant_created "
                           "ON message_search (tenant_id)")
        connection.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
                           "'ix_message_search_tenant_created'::regclass")
    command.upgrade(alembic_config(url), "head")
    assert valid() == {"ix_message_search_tenant_created": True}
    with psycopg.connect(plain, autocommit=True) as connection:
        assert connection.execute("SELECT count(*) FROM message_search WHERE "
                                  "message_id = 'stray'").fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM message_search").fetchone() == (133,)
    with psycopg.connect(plain, autocommit=True) as connection:
        definition = connection.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = "
            "'ix_message_search_tenant_created'").fetchone()
    assert definition is not None and definition[0].endswith("(tenant_id, created_at)")


WORDS = ["refund", "refunds", "o'neil", "back\\slash", "e-mail", "purple", "giraffe", "the",
         "cancelación", "z" * 210 + "a", "z" * 210 + "b", "it's", "a:b", "x&y", "'", "\\"]


KEYS_DATABASE: list[str] = []


@pytest.fixture(scope="module")
def keys_database(postgres_server: str) -> Iterator[None]:
    """A database at head for the property test (hypothesis runs it many times)."""
    with migrated_database(postgres_server, "keys") as url:
        KEYS_DATABASE[:] = [url.replace("postgresql+psycopg://", "postgresql://", 1)]
        yield


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.lists(st.sampled_from(WORDS), min_size=1, max_size=8),
       query=st.lists(st.sampled_from(WORDS + ["or", "-", '"']), min_size=1, max_size=6),
       tenant=st.sampled_from(["big", "t'x", "tenant\\1"]))
def test_an_index_key_match_is_necessary_for_a_match(keys_database, content, query,
                                                     tenant) -> None:
    """Whatever the words and the websearch syntax, a message the query matches is found by
    its tenant's index keys (a key match may be more, never less), and the query's keys parse."""
    q = " ".join(query).replace("- ", "-")
    text_ = " ".join(content)
    expression = ("CASE WHEN websearch_to_tsquery('english', %(q)s) = "
                  "websearch_to_tsquery('spanish', %(q)s) THEN "
                  "websearch_to_tsquery('english', %(q)s) ELSE "
                  "websearch_to_tsquery('english', %(q)s) || "
                  "websearch_to_tsquery('spanish', %(q)s) END")
    with psycopg.connect(KEYS_DATABASE[0]) as connection:
        matched, keyed = connection.execute(
            f"SELECT message_search_vector(%(t)s) @@ ({expression}), "
            f"message_search_keys(%(tenant)s, message_search_vector(%(t)s)) @@ "
            f"message_search_keys_query(%(tenant)s, {expression})",
            {"t": text_, "q": q, "tenant": tenant}).fetchone()
    assert keyed or not matched, (text_, q)
