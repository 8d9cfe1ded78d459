"""PostgreSQL full-text search over persisted messages.

`message_search_vector(content)` concatenates the content's tsvector in each configured
language (english and spanish by default), so "cancelaciones" and "cancelled" both find their
stems. The vectors live in `message_search` behind a GIN index, filled off the write path by
`SearchIndexer` from the conversations a trigger noted in `search_pending` (migration 0004).
Changing the languages redefines the function and queues every conversation again.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, text

DEFAULT_LANGUAGES = ("english", "spanish")
FUNCTION = "message_search_vector"
# The GIN index's keys: a message's lexemes, each tagged with its tenant, and a query's
# indexable part tagged alike (migration 0011_search_scale): an index match is necessary, not
# sufficient; the search still checks tenant_id and `vector @@ query`.
KEYS = "message_search_keys"
KEYS_QUERY = "message_search_keys_query"
# One indexer at a time; another run (two beats, a manual one) skips.
INDEXER_LOCK = 0x5345_4152  # "SEAR"
PENDING_PER_PASS = 2_000
_LANGUAGE = re.compile(r"^[a-z_]{1,63}$")
# Marks ts_headline puts around a match: control characters no message text uses, turned into
# offsets before anything reaches a browser (no HTML in the API's answers).
START_MARK, STOP_MARK = "\x02", "\x03"


def checked_languages(languages: Sequence[str]) -> tuple[str, ...]:
    names = tuple(language.strip().lower() for language in languages if language.strip())
    if not names or not all(_LANGUAGE.match(name) for name in names):
        raise ValueError(f"search languages must be text search configuration names: {languages}")
    return names


def search_function_sql(languages: Sequence[str]) -> str:
    vectors = " || ".join(f"to_tsvector('{name}'::regconfig, content)"
                          for name in checked_languages(languages))
    return (f"CREATE OR REPLACE FUNCTION {FUNCTION}(content text) RETURNS tsvector "
            f"LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {vectors} $$")


def query_sql(languages: Sequence[str]) -> str:
    """The tsquery of the `q` parameter in every language (websearch syntax: quotes for
    phrases, `or`, `-` to exclude); once when every language parses it alike (most words:
    'refund' | 'refund' matches and ranks as 'refund' does, and ranking it cost twice as
    much)."""
    queries = [f"websearch_to_tsquery('{name}'::regconfig, :q)"
               for name in checked_languages(languages)]
    if len(queries) == 1:
        return queries[0]
    alike = " AND ".join(f"{queries[0]} = {other}" for other in queries[1:])
    return f"CASE WHEN {alike} THEN {queries[0]} ELSE {' || '.join(queries)} END"


def split_highlights(headline: str) -> tuple[str, list[tuple[int, int]]]:
    """A ts_headline with START/STOP marks -> the plain snippet and the [start, end) spans
    of its matches."""
    text: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for char in headline:
        if char == START_MARK:
            start = length
        elif char == STOP_MARK:
            if start is not None:
                spans.append((start, length))
            start = None
        else:
            text.append(char)
            length += 1
    return "".join(text), spans


class SearchIndexer:
    """Computes the vectors of the conversations noted in `search_pending`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def index_pending(self, max_passes: int = 20) -> int | None:
        """Index what is pending, in passes; the number of conversations indexed, or None
        when another indexer holds the lock."""
        done = 0
        for _ in range(max_passes):
            indexed = self._pass()
            if indexed is None:
                return None if done == 0 else done
            done += indexed
            if indexed == 0:
                break
        return done

    def _pass(self) -> int | None:
        """One REPEATABLE READ transaction: the pending rows read, the messages indexed and
        the rows deleted are one snapshot; anything noted meanwhile waits for the next pass."""
        with self.engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                if not connection.scalar(text(f"SELECT pg_try_advisory_xact_lock({INDEXER_LOCK})")):
                    return None
                pending = connection.execute(text(
                    "SELECT id, conversation_id FROM search_pending ORDER BY id LIMIT :n"),
                    {"n": PENDING_PER_PASS}).all()
                if not pending:
                    return 0
                conversation_ids = sorted({row.conversation_id for row in pending})
                connection.execute(text(f"""
                    INSERT INTO message_search
                        (conversation_id, message_id, tenant_id, created_at, vector)
                    SELECT m.conversation_id, m.id, m.tenant_id, m.created_at,
                           {FUNCTION}(m.content)
                    FROM messages m
                    -- only a message in a conversation of its tenant (the search relies on it)
                    JOIN conversations c ON c.id = m.conversation_id AND c.tenant_id = m.tenant_id
                    WHERE m.conversation_id = ANY(:ids)
                      AND NOT EXISTS (SELECT 1 FROM message_search s
                                      WHERE s.conversation_id = m.conversation_id
                                        AND s.message_id = m.id)
                    ON CONFLICT DO NOTHING
                """), {"ids": conversation_ids})
                connection.execute(text("DELETE FROM search_pending WHERE id = ANY(:ids)"),
                                   {"ids": [row.id for row in pending]})
        return len(conversation_ids)

    def pending(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.scalar(text("SELECT count(*) FROM search_pending")) or 0)


def reindex_everything(connection: Any) -> None:
    """After the languages changed: drop every vector and queue every conversation."""
    connection.execute(text("TRUNCATE message_search"))
    connection.execute(text("INSERT INTO search_pending (conversation_id) "
                            "SELECT id FROM conversations"))
