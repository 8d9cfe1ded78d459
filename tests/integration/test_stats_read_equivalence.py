"""The stats answer read from the rollup is byte-for-byte the one the first implementation
gave (kept here, frozen, as `reference_stats`), on varied seeded rows: several agents and
models, empty days and empty sketches, the zero bucket, every grouping, ranges, one agent."""
from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, create_engine, delete, func, insert, select

from conversation.adapters.sql_schema import ALL, stats_active, stats_daily
from conversation.domain.messages import utc_timestamp
from conversation.domain.sketch import ZERO
from conversation.domain.stats import Aggregate
from conversation.queries.stats import (
    TenantStatistics,
    _dead_letters_query,
    _sums,
    _top_agents,
    day_range,
    period_of,
)

pytestmark = pytest.mark.integration

FIRST_DAY = date(2026, 8, 26)
DAYS = 90


def reference_stats(engine: Engine, tenant_id: str, *, start: datetime | None,
                    end: datetime | None, group_by: str = "day",
                    agent_id: str | None = None) -> dict[str, Any]:
    """TenantStatistics.stats as first written: every row's sketches merged in Python."""
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
    with engine.connect() as connection:
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
        dead_letter_count = connection.scalar(_dead_letters_query(tenant_id, agent_id, start, end))
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
                row.conversations, row.messages)
            active_by_agent[row.agent_id] = (
                conversations_so_far + row.conversations, messages_so_far + row.messages)
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
        "series": [{"period": period.isoformat(), **periods[period].measures()}
                   for period in sorted(periods)],
        "agents": _top_agents(agents, active_by_agent),
        "models": [{"model": row.model, "conversations": int(row.started),
                    "closed": int(row.closed), "messages": int(row.messages),
                    "tokens_in": int(row.tokens_in), "tokens_out": int(row.tokens_out)}
                   for row in models],
    }


def _sketch(rng: random.Random, size: int, spread: int = 600) -> dict[str, int]:
    """A stored sketch: bucket index (as a JSON key) -> count; sometimes the zero bucket."""
    if size == 0:
        return {}
    buckets = rng.sample(range(-100, spread), min(size, spread + 100))
    sketch = {str(bucket): rng.randint(1, 40) for bucket in buckets}
    if rng.random() < 0.2:
        sketch[str(ZERO)] = rng.randint(1, 5)
    return sketch


def _row(rng: random.Random, tenant: str, day: date, agent: str, model: str,
         size: int) -> dict[str, Any]:
    rated = rng.randint(0, 30) if rng.random() < 0.8 else 0
    return {
        "tenant_id": tenant, "day": day, "agent_id": agent, "model": model,
        "started": rng.randint(0, 500), "closed": rng.randint(0, 500),
        "messages": rng.randint(0, 20_000), "messages_in": rng.randint(0, 10_000),
        "messages_out": rng.randint(0, 10_000), "tokens_in": rng.randint(0, 10**7),
        "tokens_out": rng.randint(0, 10**7), "rated": rated,
        # Not only whole numbers: a float sum's last bits follow the order of the additions.
        "satisfaction_sum": rated * rng.choice((1.0, 2.5, 3.7, 4.1, 9.99)),
        "duration": _sketch(rng, size if rng.random() > 0.05 else 0),
        "first_response": _sketch(rng, size // 2 if rng.random() > 0.1 else 0, 300),
        "resolution": _sketch(rng, size if rng.random() > 0.3 else 0),
        "updated_at": datetime(2026, 12, 1, tzinfo=UTC),
    }


def seed_tenant(engine: Engine, tenant: str, *, agents: int, models: int, days: int = DAYS,
                sketch_size: int = 300, seed: int = 7, skip_every: int = 0) -> None:
    """stats_daily rows as the rollup writes them: for each day, the tenant's (*, *) row,
    one per agent, one per model and one per agent and model; days skipped when asked."""
    rng = random.Random(seed)
    rows = []
    for offset in range(days):
        if skip_every and offset % skip_every == 3:
            continue  # an empty day: no row at all
        day = FIRST_DAY + timedelta(days=offset)
        rows.append(_row(rng, tenant, day, ALL, ALL, sketch_size))
        for agent in range(agents):
            rows.append(_row(rng, tenant, day, f"agent-{agent}", ALL, sketch_size // 3))
        for model in range(models):
            rows.append(_row(rng, tenant, day, ALL, f"model-{model}", sketch_size // 2))
            for agent in range(agents):
                rows.append(_row(rng, tenant, day, f"agent-{agent}", f"model-{model}", 8))
    with engine.begin() as connection:
        connection.execute(delete(stats_daily).where(stats_daily.c.tenant_id == tenant))
        connection.execute(delete(stats_active).where(stats_active.c.tenant_id == tenant))
        for chunk in range(0, len(rows), 2_000):
            connection.execute(insert(stats_daily), rows[chunk:chunk + 2_000])
        connection.execute(insert(stats_active), [
            {"tenant_id": tenant, "day": FIRST_DAY + timedelta(days=offset),
             "agent_id": f"agent-{agent}", "conversations": rng.randint(1, 9),
             "messages": rng.randint(1, 90),
             "taken_at": datetime(2026, 11, 24, 12, second, tzinfo=UTC)}
            for second, (offset, agent) in enumerate([(89, 0), (89, 1), (88, 2), (3, 0), (95, 5)])
        ])


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    seed_tenant(engine, "wide", agents=12, models=3, skip_every=10)
    seed_tenant(engine, "narrow", agents=1, models=1, days=20, sketch_size=5, seed=11)
    yield engine
    with engine.begin() as connection:
        connection.execute(delete(stats_daily).where(stats_daily.c.tenant_id.in_(["wide", "narrow"])))
        connection.execute(delete(stats_active).where(stats_active.c.tenant_id.in_(["wide", "narrow"])))
    engine.dispose()


def at(day: str, clock: str = "00:00:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}+00:00")


RANGES = [
    (None, None),
    (at("2026-08-26"), at("2026-11-24")),  # the 90 days, to a midnight
    (at("2026-09-03", "13:30:00"), at("2026-10-14", "08:00:00")),  # mid-day ends
    (at("2026-09-29"), None),
    (None, at("2026-09-02")),
    (at("2027-01-01"), at("2027-02-01")),  # no row at all
    (at("2026-08-29"), at("2026-08-30")),  # one day, which has no row ("wide" skips it)
]


@pytest.mark.parametrize("tenant", ["wide", "narrow", "nobody"])
@pytest.mark.parametrize("group_by", ["day", "week", "month"])
@pytest.mark.parametrize("span", RANGES, ids=lambda span: "-".join(
    moment.strftime("%m%d%H") if moment else "open" for moment in span))
def test_tenant_stats_equal_the_first_implementation(engine: Engine, tenant: str,
                                                     group_by: str, span: Any) -> None:
    start, end = span
    expected = orjson.dumps(reference_stats(engine, tenant, start=start, end=end,
                                            group_by=group_by))
    answer = TenantStatistics(engine).stats_json(tenant, start=start, end=end, group_by=group_by)
    assert answer == expected


@pytest.mark.parametrize("agent_id", ["agent-0", "agent-5", "agent-11", "agent-99"])
@pytest.mark.parametrize("group_by", ["day", "week", "month"])
@pytest.mark.parametrize("span", RANGES[:4])
def test_agent_stats_equal_the_first_implementation(engine: Engine, agent_id: str,
                                                    group_by: str, span: Any) -> None:
    start, end = span
    expected = orjson.dumps(reference_stats(engine, "wide", start=start, end=end,
                                            group_by=group_by, agent_id=agent_id))
    answer = TenantStatistics(engine).stats_json("wide", start=start, end=end,
                                                 group_by=group_by, agent_id=agent_id)
    assert answer == expected
