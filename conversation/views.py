"""Read models for the API (cosmicpython's views): plain SQL over the tables, plus the active
conversations in Redis. Statistics and lists read from the replica engine when one is set.
"""
from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from redis.exceptions import RedisError
from sqlalchemy import Engine, and_, func, or_, select

from conversation.adapters.read_cache import StatsCache
from conversation.adapters.redis_store import RedisActiveStore
from conversation.adapters.sql_repository import SqlRepository
from conversation.adapters.sql_schema import (
    ALL,
    conversations,
    dead_letters,
    stats_active,
    stats_daily,
)
from conversation.domain.messages import (
    IDENTIFIER_PATTERN,
    Conversation,
    parse_timestamp,
    utc_timestamp,
)
from conversation.domain.stats import Aggregate
from conversation.services.ports import ActiveStoreUnavailable

GROUPS = ("day", "week", "month")


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
        stats_cache: StatsCache | None = None,
    ) -> None:
        self.active = active
        self.repository = repository
        self.read_engine = read_engine
        self.stats_cache = stats_cache

    # --- one conversation -----------------------------------------------------------------

    def full_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """From whichever tier holds it: Redis while active, PostgreSQL once migrated. Raises
        ActiveStoreUnavailable for one PostgreSQL lacks while Redis is down (it may be live
        there: neither "not found" nor its messages can be told)."""
        unavailable: ActiveStoreUnavailable | None = None
        try:
            conversation = self.active.get_conversation(conversation_id)
            history = self.active.messages(conversation_id) if conversation else []
        except ActiveStoreUnavailable as error:
            conversation, unavailable = None, error  # Redis is down: what PostgreSQL holds
        tier = "redis"
        if conversation is None:
            conversation = self.repository.get_conversation(conversation_id)
            if conversation is None:
                if unavailable is not None:
                    raise unavailable
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
            count = self.active.message_count(conversation.id)
            items.append(_conversation_summary(conversation, count, None))
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

    # --- statistics ---------------------------------------------------------------------

    def stats_json(
        self,
        tenant_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        group_by: str = "day",
        agent_id: str | None = None,
    ) -> bytes:
        """`stats` as JSON, from the cache while the rollup has not changed."""
        query = "|".join((agent_id or "", start.isoformat() if start else "",
                          end.isoformat() if end else "", group_by))
        cached = generation = None
        if self.stats_cache is not None:
            try:
                generation, cached = self.stats_cache.get(tenant_id, query)
            except (ActiveStoreUnavailable, RedisError):
                generation = None  # Redis is down: compute every time
        if cached is not None:
            return cached
        payload = orjson.dumps(
            self.stats(tenant_id, start=start, end=end, group_by=group_by, agent_id=agent_id)
        )
        if self.stats_cache is not None and generation is not None:
            try:
                self.stats_cache.put(tenant_id, query, generation, payload)
            except (ActiveStoreUnavailable, RedisError):
                pass  # the answer stands; only the cache missed it
        return payload

    def stats(
        self,
        tenant_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        group_by: str = "day",
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        """From the rollup (stats_daily) and the active snapshot (stats_active): a handful of
        rows per day whatever the number of messages behind them."""
        first_day, end_day = day_range(start, end)
        agent = agent_id or ALL
        d = stats_daily.c
        in_range = [d.tenant_id == tenant_id]
        if first_day:
            in_range.append(d.day >= first_day)
        if end_day:
            in_range.append(d.day < end_day)
        a = stats_active.c
        active_where = [a.tenant_id == tenant_id] + ([a.agent_id == agent_id] if agent_id else [])
        with self.read_engine.connect() as connection:
            days = connection.execute(
                select(stats_daily).where(*in_range, d.agent_id == agent, d.model == ALL)
            ).all()
            agents = [] if agent_id else connection.execute(
                select(d.agent_id, *_sums(d))
                .where(*in_range, d.agent_id != ALL, d.model == ALL)
                .group_by(d.agent_id)
            ).all()
            models = connection.execute(
                select(d.model, *_sums(d))
                .where(*in_range, d.agent_id == agent, d.model != ALL)
                .group_by(d.model)
                .order_by(func.sum(d.started).desc(), d.model)
            ).all()
            active = connection.execute(select(stats_active).where(*active_where)).all()
            dead_letter_count = connection.scalar(
                _dead_letters_query(tenant_id, agent_id, start, end)
            )
        totals = Aggregate()
        periods: dict[date, Aggregate] = {}
        for row in days:
            totals.merge_row(row)
            periods.setdefault(period_of(row.day, group_by), Aggregate()).merge_row(row)
        active_by_agent: dict[str, tuple[int, int]] = {}
        for row in active:
            conversations_so_far, messages_so_far = active_by_agent.get(row.agent_id, (0, 0))
            if (first_day is None or row.day >= first_day) and (end_day is None or row.day < end_day):
                totals.add_active(row.conversations, row.messages)
                periods.setdefault(period_of(row.day, group_by), Aggregate()).add_active(
                    row.conversations, row.messages
                )
                active_by_agent[row.agent_id] = (
                    conversations_so_far + row.conversations, messages_so_far + row.messages
                )
        return {
            "tenant_id": tenant_id,
            "agent_id": agent_id,
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
            "group_by": group_by,
            "active_now": sum(row.conversations for row in active),
            "active_as_of": utc_timestamp(max(row.taken_at for row in active)) if active else None,
            "dead_letters": int(dead_letter_count or 0),
            "totals": totals.measures(),
            "series": [
                {"period": period.isoformat(), **periods[period].measures()}
                for period in sorted(periods)
            ],
            "agents": _top_agents(agents, active_by_agent),
            "models": [
                {"model": row.model, **_counts(row)} for row in models
            ],
        }


def _dead_letters_query(
    tenant_id: str, agent_id: str | None, start: datetime | None, end: datetime | None
) -> Any:
    """Dead letters of the tenant (and agent) in the range: their payload names them, alone
    or as a batch's first message."""
    kwargs = dead_letters.c.kwargs
    where = [or_(kwargs["tenant_id"].astext == tenant_id,
                 kwargs["messages"][0]["tenant_id"].astext == tenant_id)]
    if agent_id:
        where.append(or_(kwargs["agent_id"].astext == agent_id,
                         kwargs["messages"][0]["agent_id"].astext == agent_id))
    if start:
        where.append(dead_letters.c.created_at >= start)
    if end:
        where.append(dead_letters.c.created_at < end)
    return select(func.count()).select_from(dead_letters).where(*where)


def day_range(start: datetime | None, end: datetime | None) -> tuple[date | None, date | None]:
    """The UTC days a range touches: `from`'s day, up to the day before `to` when `to` is a
    midnight, else up to `to`'s day (statistics are kept per UTC day)."""
    first = start.astimezone(UTC).date() if start else None
    if end is None:
        return first, None
    end_utc = end.astimezone(UTC)
    if end_utc.time() == time():
        return first, end_utc.date()
    if end_utc.date() == date.max:
        return first, None  # up to the last day there is: no day after it to stop before
    return first, end_utc.date() + timedelta(days=1)


def period_of(day: date, group_by: str) -> date:
    if group_by == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if group_by == "month":
        return day.replace(day=1)
    return day


def _sums(d: Any) -> list[Any]:
    return [
        func.sum(getattr(d, name)).label(name)
        for name in ("started", "closed", "messages", "tokens_in", "tokens_out")
    ]


def _counts(row: Any) -> dict[str, int]:
    return {
        "conversations": int(row.started),
        "closed": int(row.closed),
        "messages": int(row.messages),
        "tokens_in": int(row.tokens_in),
        "tokens_out": int(row.tokens_out),
    }


TOP_AGENTS = 10


def _top_agents(rows: Sequence[Any], active: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """The most used agents: conversations started in the range, active ones included."""
    agents = {row.agent_id: _counts(row) for row in rows}
    for agent_id, (conversations_count, messages_count) in active.items():
        entry = agents.setdefault(agent_id, {"conversations": 0, "closed": 0, "messages": 0,
                                             "tokens_in": 0, "tokens_out": 0})
        entry["conversations"] += conversations_count
        entry["messages"] += messages_count
    ranked = sorted(agents.items(), key=lambda item: (-item[1]["conversations"], item[0]))
    return [{"agent_id": agent_id, **counts} for agent_id, counts in ranked[:TOP_AGENTS]]
