"""A tenant's conversations, newest first, page by page (a cursor per page): the active ones
from Redis, the persisted ones by plain SQL (on the read replica when set)."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, tuple_

from conversation.adapters.sql_schema import conversations
from conversation.domain.messages import IDENTIFIER_PATTERN, parse_timestamp, utc_timestamp
from conversation.queries.transcripts import conversation_summary
from conversation.services.tiers import Tiers


class BadCursor(ValueError):
    pass


def encode_cursor(created_at: str, conversation_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}|{conversation_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (created_at, id) key a cursor holds, checked as the API gave it out: an instant
    Python holds (in UTC, as keys are compared as strings) and an identifier."""
    try:
        created_at, conversation_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        created_at = utc_timestamp(parse_timestamp(created_at))
    except (ValueError, OverflowError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadCursor("cursor is not one this API gave out") from exc
    if not IDENTIFIER_PATTERN.fullmatch(conversation_id):
        raise BadCursor("cursor is not one this API gave out")
    return created_at, conversation_id


@dataclass(frozen=True)
class ListFilters:
    status: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None


class ConversationListing:
    def __init__(self, tiers: Tiers, read_engine: Engine) -> None:
        self.tiers = tiers
        self.read_engine = read_engine

    def list_conversations(
        self, tenant_id: str, filters: ListFilters, limit: int, after: tuple[str, str] | None
    ) -> dict[str, Any]:
        """Newest first, by (created_at, id); `after` is the last listed item's key (the
        decoded cursor)."""
        items = self._active_items(tenant_id, filters, after) + self._persisted_items(
            tenant_id, filters, limit + 1, after
        )
        seen: set[str] = set()
        unique = []
        for item in sorted(items, key=lambda i: (i["created_at"], i["id"]), reverse=True):
            if item["id"] not in seen:
                seen.add(item["id"])
                unique.append(item)
        page = unique[:limit]
        next_cursor = (
            encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(unique) > limit else None
        )
        return {"items": page, "next_cursor": next_cursor}

    def _active_items(
        self, tenant_id: str, filters: ListFilters, after: tuple[str, str] | None
    ) -> list[dict[str, Any]]:
        if filters.status not in (None, "active"):
            return []
        # None while Redis is down: the list shows what PostgreSQL holds.
        active = self.tiers.active_conversations(tenant_id)
        items = []
        for conversation in active:
            key = (conversation.created_at, conversation.id)
            created = parse_timestamp(conversation.created_at)
            if (
                (after is not None and key >= after)
                or (filters.agent_id and conversation.agent_id != filters.agent_id)
                or (filters.session_id and conversation.session_id != filters.session_id)
                or (filters.start and created < filters.start)
                or (filters.end and created >= filters.end)
            ):
                continue
            count = self.tiers.active_message_count(conversation.id)
            items.append(conversation_summary(conversation, count, None))
        return items

    def _persisted_items(
        self,
        tenant_id: str,
        filters: ListFilters,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[dict[str, Any]]:
        c = conversations.c
        query = select(conversations).where(c.tenant_id == tenant_id)
        if filters.status:
            query = query.where(c.status == filters.status)
        if filters.agent_id:
            query = query.where(c.agent_id == filters.agent_id)
        if filters.session_id:
            query = query.where(c.session_id == filters.session_id)
        if filters.start:
            query = query.where(c.created_at >= filters.start)
        if filters.end:
            query = query.where(c.created_at < filters.end)
        # Ids by code point whatever the database's collation: the order Python merges the
        # pages in and compares the cursor by (in English, "a1" < "B1": a cursor after "a1"
        # skipped "B1" among conversations that share a created_at).
        id_by_code_point = c.id.collate("C")
        if after is not None:
            created_at, conversation_id = parse_timestamp(after[0]), after[1]
            # A row comparison, which the (tenant_id, created_at, id) index answers from the
            # cursor on; the same rows as "created_at < x or (created_at = x and id < y)",
            # which PostgreSQL applied as a filter to every newer row (a page deep in a
            # large tenant's list read all the rows before it: issue 18).
            query = query.where(
                tuple_(c.created_at, id_by_code_point) < tuple_(created_at, conversation_id))
        query = query.order_by(c.created_at.desc(), id_by_code_point.desc()).limit(limit)
        with self.read_engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            {
                "id": r.id,
                "tenant_id": r.tenant_id,
                "session_id": r.session_id,
                "agent_id": r.agent_id,
                "status": r.status,
                "created_at": utc_timestamp(r.created_at),
                "closed_at": utc_timestamp(r.closed_at) if r.closed_at else None,
                "message_count": r.message_count,
                "last_message_at": utc_timestamp(r.last_message_at)
                if r.last_message_at
                else None,
            }
            for r in rows
        ]
