"""PostgreSQL full-text search over persisted messages.

`message_search_vector(content)` concatenates the content's tsvector in each configured
language (english and spanish by default), so "cancelaciones" and "cancelled" both find their
stems; a GIN index on that expression serves every query. Changing the languages redefines the
function and rebuilds the index (`conversation db search-languages`).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

DEFAULT_LANGUAGES = ("english", "spanish")
FUNCTION = "message_search_vector"
INDEX = "ix_messages_search"
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


def create_index_sql() -> str:
    return f"CREATE INDEX IF NOT EXISTS {INDEX} ON messages USING gin ({FUNCTION}(content))"


def drop_sql() -> list[str]:
    return [f"DROP INDEX IF EXISTS {INDEX}", f"DROP FUNCTION IF EXISTS {FUNCTION}(text)"]


def query_sql(languages: Sequence[str]) -> str:
    """The tsquery of the `q` parameter in every language (websearch syntax: quotes for
    phrases, `or`, `-` to exclude)."""
    return " || ".join(f"websearch_to_tsquery('{name}'::regconfig, :q)"
                       for name in checked_languages(languages))


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
