"""Read models for the API (cosmicpython's views): plain SQL over the tables, plus the active
conversations in Redis. Statistics and lists read from the replica engine when one is set.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, func, literal, or_, select

from conversation.adapters.redis_store import RedisActiveStore
from conversation.adapters.sql_repository import SqlRepository
from conversation.adapters.sql_schema import conversation_stats, conversations
from conversation.domain.messages import Conversation, parse_timestamp, utc_timestamp
from conversation.services.ports import ActiveStoreUnavailable

GROUPS = ("day", "week", "month")


class BadCursor(ValueError):
    pass


def encode_cursor(created_at: str, conversation_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}|{conversation_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created_at, conversation_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        parse_timestamp(created_at)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("cursor is not one this API gave out") from exc
    return created_at, conversation_id


@dataclass(frozen=True)
class ListFilters:
    status: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def _conversation_summary(
    conversation: Conversation, message_count: int, last_message_at: str | None
) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "tenant_id": conversation.tenant_id,
        "session_id": conversation.session_id,
        "agent_id": conversation.agent_id,
        "status": str(conversation.status),
        "created_at": conversation.created_at,
        "closed_at": conversation.closed_at,
        "message_count": message_count,
        "last_message_at": last_message_at,
    }


class ConversationViews:
    def __init__(
        self,
        active: RedisActiveStore,
        repository: SqlRepository,
        read_engine: Engine,
    ) -> None:
        self.active = active
        self.repository = repository
        self.read_engine = read_engine

    # --- one conversation -----------------------------------------------------------------

    def full_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """From whichever tier holds it: Redis while active, PostgreSQL once migrated."""
        try:
            conversation = self.active.get_conversation(conversation_id)
            history = self.active.messages(conversation_id) if conversation else []
        except ActiveStoreUnavailable:
            conversation = None  # Redis is down: what PostgreSQL holds
        tier = "redis"
        if conversation is None:
            conversation = self.repository.get_conversation(conversation_id)
            if conversation is None:
                return None
            history = self.repository.messages(conversation_id)
            tier = "postgres"
        last = history[-1].created_at if history else None
        return {
            **_conversation_summary(conversation, len(history), last),
            "tier": tier,
            "summary": conversation.summary,
            "messages": [m.to_dict() for m in history],
        }

    # --- lists ----------------------------------------------------------------------------

    def list_conversations(
        self, tenant_id: str, filters: ListFilters, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        """Newest first, by (created_at, id); the cursor is the last item's key."""
        after = decode_cursor(cursor) if cursor else None
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
        try:
            active = self.active.active_conversations(tenant_id)
        except ActiveStoreUnavailable:
            return []  # Redis is down: the list shows what PostgreSQL holds
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
            history = self.active.history(conversation.id)
            items.append(_conversation_summary(conversation, history.count(), None))
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
        if after is not None:
            created_at, conversation_id = parse_timestamp(after[0]), after[1]
            query = query.where(
                or_(
                    c.created_at < created_at,
                    and_(c.created_at == created_at, c.id < conversation_id),
                )
            )
        query = query.order_by(c.created_at.desc(), c.id.desc()).limit(limit)
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

    # --- statistics -----------------------------------------------------------------------

    def stats(
        self,
        tenant_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        group_by: str = "day",
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        """Closed conversations from PostgreSQL by period; active ones counted from Redis."""
        s = conversation_stats.c
        where = [s.tenant_id == tenant_id]
        if agent_id:
            where.append(s.agent_id == agent_id)
        if start:
            where.append(s.started_at >= start)
        if end:
            where.append(s.started_at < end)
        measures = [
            func.count().label("conversations"),
            func.coalesce(func.sum(s.message_count), 0).label("messages"),
            func.coalesce(func.sum(s.user_messages), 0).label("messages_in"),
            func.coalesce(func.sum(s.assistant_messages), 0).label("messages_out"),
            func.coalesce(func.sum(s.tokens_in), 0).label("tokens_in"),
            func.coalesce(func.sum(s.tokens_out), 0).label("tokens_out"),
            func.percentile_cont(0.5).within_group(s.duration).label("duration_median"),
            func.percentile_cont(0.9).within_group(s.duration).label("duration_p90"),
            func.percentile_cont(0.5)
            .within_group(s.first_response_seconds)
            .label("first_response_median"),
            func.percentile_cont(0.9)
            .within_group(s.first_response_seconds)
            .label("first_response_p90"),
            func.avg(s.satisfaction).label("satisfaction_avg"),
        ]
        period = func.date_trunc(literal(group_by), s.started_at, literal("UTC")).label("period")
        with self.read_engine.connect() as connection:
            totals = connection.execute(select(*measures).where(*where)).one()
            series = connection.execute(
                select(period, *measures).where(*where).group_by(period).order_by(period)
            ).all()
        try:
            active_now: int | None = len([
                c
                for c in self.active.active_conversations(tenant_id)
                if agent_id is None or c.agent_id == agent_id
            ])
        except ActiveStoreUnavailable:
            active_now = None  # unknown while Redis is down
        return {
            "tenant_id": tenant_id,
            "agent_id": agent_id,
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
            "group_by": group_by,
            "active_now": active_now,
            "totals": _measures(totals),
            "series": [
                {"period": row.period.date().isoformat(), **_measures(row)} for row in series
            ],
        }


def _measures(row: Any) -> dict[str, Any]:
    conversations_count = int(row.conversations)
    messages_count = int(row.messages)
    return {
        "conversations": conversations_count,
        "messages": messages_count,
        "messages_in": int(row.messages_in),
        "messages_out": int(row.messages_out),
        "messages_per_conversation": round(messages_count / conversations_count, 2)
        if conversations_count
        else None,
        "tokens_in": int(row.tokens_in),
        "tokens_out": int(row.tokens_out),
        "duration_seconds": {"median": _round(row.duration_median), "p90": _round(row.duration_p90)},
        "first_response_seconds": {
            "median": _round(row.first_response_median),
            "p90": _round(row.first_response_p90),
        },
        "satisfaction_avg": _round(row.satisfaction_avg),
    }


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
