"""The statistics rollup in PostgreSQL: recompute the (tenant, day) buckets that changed, and
keep the snapshot of active conversations taken from Redis."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, or_, select

from conversation.adapters.postgres.schema import (
    ALL,
    conversation_stats,
    stats_active,
    stats_changes,
    stats_daily,
)
from conversation.domain.stats import Aggregate, ConversationStats

# Only one aggregator at a time recomputes: a second one (two beats, a manual run) skips.
AGGREGATOR_LOCK = 0x5747_4154  # "STAT"
CHANGES_PER_PASS = 5_000


def _stats(row: Any) -> ConversationStats:
    return ConversationStats(
        message_count=row.message_count,
        user_messages=row.user_messages,
        assistant_messages=row.assistant_messages,
        tokens_in=row.tokens_in,
        tokens_out=row.tokens_out,
        duration_seconds=row.duration,
        first_response_seconds=row.first_response_seconds,
        satisfaction=row.satisfaction,
        started_at=None,
        ended_at=None,
        resolution_seconds=row.resolution_seconds,
        model=row.model,
    )


def _day(moment: datetime | None) -> date | None:
    return moment.astimezone(UTC).date() if moment else None


def bucket_aggregates(rows: Sequence[Any], day: date) -> dict[tuple[str, str], Aggregate]:
    """One day's aggregates for all agents and models together, each agent, each model, and
    each agent and model: the four ways the API reads them."""
    groups: dict[tuple[str, str], Aggregate] = defaultdict(Aggregate)
    for row in rows:
        stats = _stats(row)
        for key in ((ALL, ALL), (row.agent_id, ALL), (ALL, row.model), (row.agent_id, row.model)):
            if _day(row.started_at) == day:
                groups[key].add_started(stats)
            if _day(row.closed_at) == day:
                groups[key].add_closed(stats)
    return groups


class SqlStatistics:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def recompute_changed(self) -> int | None:
        """Recompute the buckets noted since the last pass; the number recomputed, or None
        when another aggregator holds the lock.

        One REPEATABLE READ transaction: the changes read, the rows recomputed and the changes
        deleted are one snapshot, so a change committed meanwhile stays for the next pass.
        """
        now = datetime.now(UTC)
        with self.engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                if not connection.scalar(select(func.pg_try_advisory_xact_lock(AGGREGATOR_LOCK))):
                    return None
                changes = connection.execute(
                    select(stats_changes.c.id, stats_changes.c.tenant_id, stats_changes.c.day)
                    .order_by(stats_changes.c.id)
                    .limit(CHANGES_PER_PASS)
                ).all()
                buckets = sorted({(c.tenant_id, c.day) for c in changes})
                for tenant_id, day in buckets:
                    self._recompute(connection, tenant_id, day, now)
                if changes:
                    connection.execute(
                        delete(stats_changes).where(stats_changes.c.id.in_([c.id for c in changes]))
                    )
        return len(buckets)

    def _recompute(self, connection: Any, tenant_id: str, day: date, now: datetime) -> None:
        start = datetime.combine(day, time(), tzinfo=UTC)
        end = start + timedelta(days=1)
        s = conversation_stats.c
        rows = connection.execute(
            select(conversation_stats).where(
                s.tenant_id == tenant_id,
                or_(
                    and_(s.started_at >= start, s.started_at < end),
                    and_(s.closed_at >= start, s.closed_at < end),
                ),
            )
        ).all()
        connection.execute(
            delete(stats_daily).where(
                stats_daily.c.tenant_id == tenant_id, stats_daily.c.day == day
            )
        )
        groups = bucket_aggregates(rows, day)
        if groups:
            connection.execute(
                insert(stats_daily),
                [
                    {"tenant_id": tenant_id, "day": day, "agent_id": agent_id, "model": model,
                     "updated_at": now, **aggregate.to_row()}
                    for (agent_id, model), aggregate in groups.items()
                ],
            )

    def replace_active(self, counts: dict[tuple[str, date, str], tuple[int, int]]) -> None:
        """Replace the snapshot of active conversations: (tenant, day started, agent) ->
        (conversations, messages)."""
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            connection.execute(delete(stats_active))
            if counts:
                connection.execute(
                    insert(stats_active),
                    [
                        {"tenant_id": tenant_id, "day": day, "agent_id": agent_id,
                         "conversations": conversations, "messages": messages, "taken_at": now}
                        for (tenant_id, day, agent_id), (conversations, messages)
                        in counts.items()
                    ],
                )
