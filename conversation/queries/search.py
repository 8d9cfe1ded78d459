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
    KEYS,
    KEYS_QUERY,
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
# The order of the hits (issue 18, at 10 M messages): the tenant's newest RANK_WINDOW matches
# (of the filters) by relevance, then every older match, newest first. Ranking every match of
# a common word cost in proportion to the tenant's matches (~166 k of 'refund' in the largest
# tenant at 10 M messages: ~1 s); the newest 1,000 cost the same at any size.
RANK_WINDOW = 1_000
# How the newest matches are found: walking the tenant's messages newest first (an index on
# (tenant_id, created_at)) costs RANK_WINDOW / (the share of messages that match) rows, reading
# every match from the GIN index costs the number of matches. The newest SAMPLE_ROWS rows tell
# the share; the walk is taken when it should find the window within WALK_ROWS rows (a word
# in >= 2% of the tenant's recent messages), and stops there: a walk that falls short (the
# word rarer further back) gives way to the GIN index.
SAMPLE_ROWS = 1_000
WALK_ROWS = 50_000


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


_RECENCY = "created_at DESC, conversation_id, message_id"
# The GIN index's matches in an exact bitmap: past work_mem (4 MB by default: ~100 k matches
# spread over the table) pages turn lossy, and each of their rows is rechecked by computing its
# keys (10 M messages, 'refund' 10,000 hits deep: 11 s with lossy pages).
_WORK_MEM = text("SET LOCAL work_mem = '32MB'")
# The tenant of a row the GIN index found (its keys are the tenant's already; tags may
# collide), checked on the row: as a plain `tenant_id = :tenant` the planner intersected the
# index's few matches with the (tenant_id, created_at) index's entries of the whole tenant
# (2.2 M at 10 M messages: 100 ms).
_TENANT_CHECKED = "s.tenant_id || '' = :tenant"


def _pending(filters: SearchFilters) -> str:
    """The matches among messages the indexer has not reached yet (just migrated: their vectors
    computed here), as (conversation_id, message_id, created_at, vector)."""
    return f"""
                SELECT m.conversation_id, m.id AS message_id, m.created_at,
                       {FUNCTION}(m.content) AS vector
                FROM messages m JOIN conversations c ON c.id = m.conversation_id, query
                WHERE m.conversation_id IN (SELECT conversation_id FROM search_pending)
                  AND m.tenant_id = :tenant AND c.tenant_id = :tenant
                  AND NOT EXISTS (SELECT 1 FROM message_search s
                                  WHERE s.conversation_id = m.conversation_id
                                    AND s.message_id = m.id)
                  AND {FUNCTION}(m.content) @@ query.q {_filters_sql(filters, "m")}"""


def _ordered_page(hits: str, mismatched: str) -> str:
    """From `hits` (every match, or enough of the newest): the newest :window by recency, ranked
    (the first :ranked by relevance, the rest newest first), the page `offset` to `offset +
    limit` joined to its messages and conversations; headlines (costly) only for the page."""
    return f"""
            candidates AS (
                SELECT hits.*, row_number() OVER (ORDER BY {_RECENCY}) AS position
                FROM ({hits}) hits
                ORDER BY {_RECENCY}
                LIMIT :window
            ),
            page AS (
                SELECT * FROM (SELECT r.conversation_id, r.message_id, r.position,
                                      ts_rank_cd(r.vector, query.q) AS rank
                               FROM candidates r, query
                               OFFSET 0) ranked  -- one ts_rank_cd a row, not one per use
                ORDER BY position > :ranked,
                         CASE WHEN position <= :ranked THEN rank END DESC, position
                LIMIT :limit OFFSET :offset
            )
            SELECT {_COLUMNS}, page.rank, page.position,
                   ts_headline(CAST(:headline_config AS regconfig), m.content, query.q,
                               :headline_options) AS headline,
                   {mismatched} AS mismatched
            FROM query
            LEFT JOIN (page
                       JOIN messages m ON m.conversation_id = page.conversation_id
                                      AND m.id = page.message_id AND m.tenant_id = :tenant
                       JOIN conversations c ON c.id = page.conversation_id
                                           AND c.tenant_id = :tenant) ON true
            ORDER BY page.position > :ranked,
                     CASE WHEN page.position <= :ranked THEN page.rank END DESC,
                     page.position
        """


class ConversationSearch:
    def __init__(self, read_engine: Engine, tiers: Tiers, languages: tuple[str, ...],
                 rank_window: int = RANK_WINDOW, sample_rows: int = SAMPLE_ROWS,
                 walk_rows: int = WALK_ROWS) -> None:
        self.read_engine = read_engine
        self.tiers = tiers
        self.languages = languages
        self.rank_window = rank_window
        self.sample_rows = sample_rows
        self.walk_rows = walk_rows
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
        """The page `offset` to `offset + limit` of the hits: the newest `rank_window` matches
        by relevance (ts_rank_cd, then newest), then the older ones newest first.

        Ranked first (issue 18, at 10 M messages): the newest matches are found, and ranked,
        within message_search alone, and only the page's rows joined to messages and
        conversations. The same rows as joining first, as message_search holds only messages
        in a conversation of their tenant (the indexer's join; 0011_search_scale removed any
        other) with their created_at (copied; never updated), and the key to messages keeps
        each row's message. A page row whose conversation is not this tenant's all the same
        (data damaged otherwise) makes the search join first, as does an agent filter (it
        needs the conversation of every match)."""
        params: dict[str, Any] = {
            "tenant": tenant_id, "q": q, "limit": limit, "offset": offset,
            "ranked": self.rank_window, "window": max(self.rank_window, offset + limit),
            "sample": self.sample_rows, "walk": self.walk_rows,
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
                connection.execute(_WORK_MEM)
                rows = connection.execute(self._ranked_first(filters), params).all()
            if rows and rows[0].mismatched:
                rows = None
        if rows is None:
            with self.read_engine.connect() as connection:
                connection.execute(_WORK_MEM)
                rows = connection.execute(self._joined_first(filters), params).all()
        results = []
        for row in rows:
            if row.id is None:
                continue  # the row of an empty page
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
        """Every match joined to its message and conversation (the exact answer)."""
        hits = f"""
                SELECT s.conversation_id, s.message_id, m.created_at, s.vector
                FROM message_search s
                JOIN messages m ON m.conversation_id = s.conversation_id AND m.id = s.message_id
                                AND m.tenant_id = :tenant
                JOIN conversations c ON c.id = s.conversation_id, query
                WHERE {KEYS}(s.tenant_id, s.vector) @@ query.keys
                  AND {_TENANT_CHECKED} AND c.tenant_id = :tenant
                  AND s.vector @@ query.q {_filters_sql(filters, "m")}
                UNION ALL
                {_pending(filters)}"""
        return text(f"""
            WITH query AS (SELECT q, {KEYS_QUERY}(:tenant, q) AS keys
                           FROM (SELECT ({self._query}) AS q) typed),
            {_ordered_page(hits, "false")}""")

    def _ranked_first(self, filters: SearchFilters) -> Any:
        """The newest :window matches from message_search alone: by the walk or the GIN index
        (see WALK_ROWS), each answering exactly the newest ones. `mismatched`: a row of the
        page without its conversation, or its message, in this tenant (checked on the page's
        rows alone: a probe per candidate cost a third of a rare phrase's search at 10 M
        messages); the caller then joins first. A row even when the page is empty (its hit columns null), so
        that the flag is always read."""
        dates = _filters_sql(filters, "s")
        hits = f"""
                SELECT * FROM walked WHERE (SELECT count(*) FROM walked) = :window
                UNION ALL
                (SELECT s.conversation_id, s.message_id, s.created_at, s.vector
                 FROM message_search s, query
                 WHERE (SELECT count(*) FROM walked) < :window
                   AND {KEYS}(s.tenant_id, s.vector) @@ query.keys
                   AND {_TENANT_CHECKED} AND s.vector @@ query.q {dates}
                 -- an order no index gives: the matches from the GIN index, then the top-N sort
                 ORDER BY s.created_at + interval '0' DESC, s.conversation_id, s.message_id
                 LIMIT :window)
                UNION ALL
                {_pending(filters)}"""
        return text(f"""
            WITH query AS (SELECT q, {KEYS_QUERY}(:tenant, q) AS keys
                           FROM (SELECT ({self._query}) AS q) typed),
            sample AS (
                SELECT count(*) AS matches
                FROM (SELECT s.vector FROM message_search s
                      WHERE s.tenant_id = :tenant {dates}
                      ORDER BY s.created_at DESC LIMIT :sample) newest, query
                WHERE newest.vector @@ query.q
            ),
            walked AS MATERIALIZED (
                SELECT newest.* FROM (
                    SELECT s.conversation_id, s.message_id, s.created_at, s.vector
                    FROM message_search s
                    WHERE s.tenant_id = :tenant {dates}
                      AND (SELECT matches FROM sample) * CAST(:walk AS bigint)
                          >= CAST(:window AS bigint) * :sample
                    ORDER BY {_RECENCY}
                    LIMIT :walk
                ) newest
                -- the query as a value, not a join: the walk's order is kept, and it stops at
                -- the :window-th match
                WHERE newest.vector @@ (SELECT q FROM query)
                ORDER BY {_RECENCY}
                LIMIT :window
            ),
            {_ordered_page(hits, '''EXISTS (
                       SELECT 1 FROM page r
                       WHERE NOT EXISTS (
                           SELECT 1 FROM conversations c
                           WHERE c.id = r.conversation_id AND c.tenant_id = :tenant)
                          OR NOT EXISTS (
                           SELECT 1 FROM messages m
                           WHERE m.conversation_id = r.conversation_id
                             AND m.id = r.message_id AND m.tenant_id = :tenant))''')}""")

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
