"""A tenant's statistics (cosmicpython's views): plain SQL over the rollup tables, on the read
replica when set, answers cached in Redis while the rollup has not changed."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

import msgspec
import orjson
from redis.exceptions import RedisError
from sqlalchemy import Engine, Text, cast, func, or_, select

from conversation.adapters.sql_schema import ALL, dead_letters, stats_active, stats_daily
from conversation.domain.messages import utc_timestamp
from conversation.domain.stats import Aggregate, grouped_percentiles
from conversation.services.ports import ActiveStoreUnavailable

GROUPS = ("day", "week", "month")


class AnswerCache(Protocol):
    """Serialised answers per (tenant, query), valid for one rollup generation."""

    def get(self, tenant_id: str, query: str) -> tuple[bytes, bytes | None]: ...

    def put(self, tenant_id: str, query: str, generation: bytes, payload: bytes) -> None: ...


class TenantStatistics:
    def __init__(self, read_engine: Engine, stats_cache: AnswerCache | None = None) -> None:
        self.read_engine = read_engine
        self.stats_cache = stats_cache

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
                select(d.day, *(getattr(d, name) for name in Aggregate.COUNTS),
                       *(cast(getattr(d, name), Text).label(name) for name in Aggregate.SKETCHES))
                .where(*in_range, d.agent_id == agent, d.model == ALL)
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
            totals.merge_counts(row)
            periods.setdefault(period_of(row.day, group_by), Aggregate()).merge_counts(row)
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
        ordered = sorted(periods)
        percentiles = _percentiles(days, [period_of(row.day, group_by) for row in days], ordered)
        return {
            "tenant_id": tenant_id,
            "agent_id": agent_id,
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
            "group_by": group_by,
            "active_now": sum(row.conversations for row in active),
            "active_as_of": utc_timestamp(max(row.taken_at for row in active)) if active else None,
            "dead_letters": int(dead_letter_count or 0),
            "totals": totals.measures(percentiles[-1]),
            "series": [
                {"period": period.isoformat(), **periods[period].measures(percentiles[i])}
                for i, period in enumerate(ordered)
            ],
            "agents": _top_agents(agents, active_by_agent),
            "models": [
                {"model": row.model, **_counts(row)} for row in models
            ],
        }


# The rollup's sketches as stored (JSON text: bucket index as a string key -> count), read
# straight into int keys in C rather than json.loads then int() per bucket.
_SKETCH = msgspec.json.Decoder(dict[int, int] | None)


def _percentiles(
    days: Sequence[Any], period_of_row: Sequence[date], ordered: Sequence[date]
) -> list[dict[str, dict[str, float | None]]]:
    """Per sketch name, the percentiles of each period in `ordered` and, last, of the totals:
    each row's sketch counts in its period and in the totals. All measures in one pass, each
    as its own band of groups."""
    index = {period: i for i, period in enumerate(ordered)}
    band = len(ordered) + 1
    sketches: list[tuple[tuple[int, int], dict[int, int]]] = []
    for offset, name in enumerate(Aggregate.SKETCHES):
        first = offset * band
        sketches.extend(
            ((first + index[period], first + band - 1), _SKETCH.decode(getattr(row, name)) or {})
            for row, period in zip(days, period_of_row, strict=True)
        )
    found = grouped_percentiles(sketches, band * len(Aggregate.SKETCHES))
    return [
        {name: found[offset * band + i] for offset, name in enumerate(Aggregate.SKETCHES)}
        for i in range(band)
    ]


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
