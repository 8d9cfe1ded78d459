"""Conversation search: "find me the conversation where the customer said X".

Persisted messages through PostgreSQL's full-text search (ranked, language-aware, highlighted,
on the read replica when set; indexed by `conversation.index_search`, the not yet indexed
computed on the fly); the tenant's active conversations in Redis by plain word
matching (few, and not indexed), listed apart on the first page.
"""
from __future__ import annotations

import base64
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

from conversation.adapters.search_sql import (
    FUNCTION,
    START_MARK,
    STOP_MARK,
    query_sql,
    split_highlights,
)
from conversation.domain.messages import parse_timestamp, utc_timestamp
from conversation.services.ports import ActiveStoreUnavailable
from conversation.services.tiers import Tiers

SNIPPET_CHARS = 160
MAX_OFFSET = 10_000  # deep pages of a ranked search are not worth their cost


class BadSearchCursor(ValueError):
    pass


@dataclass(frozen=True)
class SearchFilters:
    start: datetime | None = None
    end: datetime | None = None
    agent_id: str | None = None


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def decode_search_cursor(cursor: str) -> int:
    """The offset a cursor holds, within the pages this API gives out."""
    try:
        value = base64.urlsafe_b64decode(cursor.encode()).decode()
        offset = int(value[1:]) if value.startswith("o") and value[1:].isdigit() else -1
    except ValueError:  # UnicodeDecodeError and binascii.Error are ValueErrors
        offset = -1
    if not 0 <= offset <= MAX_OFFSET:
        raise BadSearchCursor("cursor is not one this API gave out")
    return offset


def _fold(value: str) -> str:
    """Lower case without accents: "Canción" matches "cancion"."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_COLUMNS = ("m.conversation_id, m.id, m.role, m.created_at, m.content, c.session_id, "
            "c.agent_id, c.status")


def _filters_sql(filters: SearchFilters, messages: str) -> str:
    """The filters' conditions, the dates on `messages`' created_at (m: the messages table,
    s: message_search's copy of it)."""
    where = []
    if filters.start:
        where.append(f"AND {messages}.created_at >= :start")
    if filters.end:
        where.append(f"AND {messages}.created_at < :end")
    if filters.agent_id:
        where.append("AND c.agent_id = :agent")
    return " ".join(where)


def _page(indexed: str, extra: str) -> str:
    """The `hits` CTE: the indexed hits and those of messages the indexer has not reached yet
    (just migrated: their vectors computed here), ranked and paged first; headlines (costly)
    only for the page's rows."""
    return f"""
            hits AS (
                {indexed}
                UNION ALL
                SELECT {_COLUMNS}, ts_rank_cd({FUNCTION}(m.content), query.q) AS rank
                FROM messages m JOIN conversations c ON c.id = m.conversation_id, query
                WHERE m.conversation_id IN (SELECT conversation_id FROM search_pending)
                  AND m.tenant_id = :tenant AND c.tenant_id = :tenant
                  AND NOT EXISTS (SELECT 1 FROM message_search s
                                  WHERE s.conversation_id = m.conversation_id
                                    AND s.message_id = m.id)
                  AND {FUNCTION}(m.content) @@ query.q {extra}
                ORDER BY rank DESC, created_at DESC, conversation_id, id
                LIMIT :limit OFFSET :offset
            )
            SELECT hits.*, ts_headline(CAST(:headline_config AS regconfig), hits.content,
                                       query.q, :headline_options) AS headline"""


class ConversationSearch:
    def __init__(self, read_engine: Engine, tiers: Tiers,
                 languages: tuple[str, ...]) -> None:
        self.read_engine = read_engine
        self.tiers = tiers
        self.languages = languages
        self._query = query_sql(languages)

    def search(self, tenant_id: str, q: str, filters: SearchFilters, limit: int,
               offset: int = 0) -> dict[str, Any]:
        """A page of hits from `offset` (the decoded cursor)."""
        items = self._persisted(tenant_id, q, filters, limit + 1, offset)
        more = len(items) > limit
        return {
            "query": q,
            "items": items[:limit],
            "next_cursor": _cursor(offset + limit) if more and offset + limit <= MAX_OFFSET
            else None,
            "active": self._active(tenant_id, q, filters, limit) if offset == 0 else [],
        }

    def _persisted(self, tenant_id: str, q: str, filters: SearchFilters, limit: int,
                   offset: int, ranked_first: bool = True) -> list[dict[str, Any]]:
        """The page `offset` to `offset + limit` of the ranked hits.

        Ranked first (issue 18, at 10 M messages): the tenant's matches are ranked and paged
        within message_search alone, and only the page's rows joined to messages and
        conversations; joining every match first cost two index probes a match (a common word
        in a large tenant: most of the time). The same rows as joining first whenever every
        ranked row has its message, with the created_at the indexer copied, and its
        conversation in this tenant; otherwise, and with an agent filter (it needs the
        conversation of every match), the search joins first, as before."""
        params: dict[str, Any] = {
            "tenant": tenant_id, "q": q, "limit": limit, "offset": offset,
            "headline_config": self.languages[0],
            "headline_options": f"StartSel={START_MARK}, StopSel={STOP_MARK}, MaxWords=30, "
                                'MinWords=12, MaxFragments=2, FragmentDelimiter=" … "',
        }
        if filters.start:
            params["start"] = filters.start
        if filters.end:
            params["end"] = filters.end
        if filters.agent_id:
            params["agent"] = filters.agent_id
        rows = None
        if ranked_first and not filters.agent_id:
            with self.read_engine.connect() as connection:
                rows = connection.execute(self._ranked_first(filters), params).all()
            if rows and rows[0].mismatched:
                rows = None
            else:
                rows = [row for row in rows if row.id is not None]  # the no-hit row
        if rows is None:
            with self.read_engine.connect() as connection:
                rows = connection.execute(self._joined_first(filters), params).all()
        results = []
        for row in rows:
            snippet, spans = split_highlights(row.headline or "")
            results.append({
                "conversation_id": row.conversation_id, "message_id": row.id,
                "session_id": row.session_id, "agent_id": row.agent_id,
                "status": row.status, "role": row.role,
                "created_at": utc_timestamp(row.created_at),
                "rank": round(float(row.rank), 6), "snippet": snippet,
                "highlights": [list(span) for span in spans], "tier": "postgres",
            })
        return results

    def _joined_first(self, filters: SearchFilters) -> Any:
        extra = _filters_sql(filters, "m")
        indexed = f"""
                SELECT {_COLUMNS}, ts_rank_cd(s.vector, query.q) AS rank
                FROM message_search s
                JOIN messages m ON m.conversation_id = s.conversation_id AND m.id = s.message_id
                JOIN conversations c ON c.id = s.conversation_id, query
                WHERE s.tenant_id = :tenant AND c.tenant_id = :tenant
                  AND s.vector @@ query.q {extra}"""
        return text(f"""
            WITH query AS (SELECT ({self._query}) AS q),
            {_page(indexed, extra)}
            FROM hits, query
            ORDER BY hits.rank DESC, hits.created_at DESC, hits.conversation_id, hits.id
        """)

    def _ranked_first(self, filters: SearchFilters) -> Any:
        # `mismatched`: a ranked row without its message, or its conversation in this tenant,
        # or with another created_at; the caller then joins first (the exact answer). A row
        # even when no hit joins (its hit columns null): ranked rows that all mismatch would
        # otherwise give an empty page, and the flag with it.
        indexed = f"""
                SELECT {_COLUMNS}, r.rank
                FROM ranked r
                JOIN messages m ON m.conversation_id = r.conversation_id AND m.id = r.message_id
                JOIN conversations c ON c.id = r.conversation_id AND c.tenant_id = :tenant"""
        return text(f"""
            WITH query AS (SELECT ({self._query}) AS q),
            ranked AS (
                SELECT s.conversation_id, s.message_id, s.created_at,
                       ts_rank_cd(s.vector, query.q) AS rank
                FROM message_search s, query
                WHERE s.tenant_id = :tenant AND s.vector @@ query.q
                      {_filters_sql(filters, "s")}
                ORDER BY rank DESC, s.created_at DESC, s.conversation_id, s.message_id
                LIMIT :limit + :offset
            ),
            {_page(indexed, _filters_sql(filters, "m"))},
                   EXISTS (SELECT 1 FROM ranked r
                           WHERE NOT EXISTS (
                               SELECT 1 FROM messages m
                               JOIN conversations c ON c.id = m.conversation_id
                               WHERE m.conversation_id = r.conversation_id
                                 AND m.id = r.message_id AND m.created_at = r.created_at
                                 AND c.tenant_id = :tenant)) AS mismatched
            FROM query LEFT JOIN hits ON true
            ORDER BY hits.rank DESC, hits.created_at DESC, hits.conversation_id, hits.id
        """)

    def _active(self, tenant_id: str, q: str, filters: SearchFilters,
                limit: int) -> list[dict[str, Any]]:
        words = [_fold(w) for w in q.replace('"', " ").split()
                 if w and not w.startswith("-") and w.lower() != "or"]
        if not words:
            return []
        try:
            conversations = self.tiers.active_conversations(tenant_id)
            found: list[dict[str, Any]] = []
            for conversation in conversations:
                if filters.agent_id and conversation.agent_id != filters.agent_id:
                    continue
                for message in reversed(self.tiers.active_messages(conversation.id)):
                    created = parse_timestamp(message.created_at)
                    if (filters.start and created < filters.start) or (
                            filters.end and created >= filters.end):
                        continue
                    folded = _fold(message.content)
                    if all(word in folded for word in words):
                        found.append(_active_hit(conversation, message, folded, words))
                        break  # one hit per conversation: the newest
                if len(found) >= limit:
                    break
        except ActiveStoreUnavailable:
            return []  # Redis went down mid-way: PostgreSQL's answer stands alone
        return found


def _active_hit(conversation: Any, message: Any, folded: str,
                words: list[str]) -> dict[str, Any]:
    """A snippet around the first match; folding keeps lengths for most text, and the spans
    are recomputed on the snippet itself."""
    first = min(folded.find(word) for word in words)
    start = max(0, first - SNIPPET_CHARS // 3)
    if start > 0:
        # Begin at a word: the first space after the cut, unless that skips the match.
        space = message.content.find(" ", start, first)
        start = space + 1 if space >= 0 else start
    snippet = message.content[start:start + SNIPPET_CHARS]
    folded_snippet = _fold(snippet)
    spans = []
    for word in words:
        at = folded_snippet.find(word)
        if at >= 0 and len(folded_snippet) == len(snippet):
            spans.append([at, at + len(word)])
    return {
        "conversation_id": conversation.id, "message_id": message.id,
        "session_id": conversation.session_id, "agent_id": conversation.agent_id,
        "status": str(conversation.status), "role": str(message.role),
        "created_at": message.created_at, "rank": None, "snippet": snippet,
        "highlights": sorted(spans), "tier": "redis",
    }
