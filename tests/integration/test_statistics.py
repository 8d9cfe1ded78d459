"""Statistics on hand-built conversations with known answers: the rollup written by
aggregate_stats on real PostgreSQL and Redis, read through the API."""
from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from api import create_app
from conversation.adapters.postgres.schema import messages as messages_table
from conversation.adapters.postgres.schema import dead_letters, stats_daily
from conversation.adapters.sql_stats import AGGREGATOR_LOCK
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role
from conversation.services.migration import ConversationMigrator

pytestmark = pytest.mark.integration

DAY1, DAY2 = "2026-11-01", "2026-11-02"  # a Sunday and the Monday after


def say(container: Container, tenant: str, session: str, role: str, at: str, **extra: object) -> None:
    container.saver.save(NewMessage(
        tenant_id=tenant, session_id=session, agent_id=str(extra.pop("agent", "support")),
        role=Role(role), content=f"{role} at {at}", message_id=f"{session}-{at}",
        created_at=at, **extra,  # type: ignore[arg-type]
    ))


def close(container: Container, tenant: str, session: str, at: str) -> None:
    closed = container.active_store.close_session(tenant, session, at)
    assert closed is not None
    ConversationMigrator(container.active_store, container.repository).migrate(
        closed.conversation_id, closed.generation)


@pytest.fixture
def known(container: Container) -> str:
    """Three closed conversations and one active, over two UTC days."""
    tenant = f"known-{container.settings.redis_key_prefix.strip(':')}"
    # c1 (support, gpt-4o): first response 30 s, duration 300 s, rated 5, resolved in 600 s.
    say(container, tenant, "c1", "user", f"{DAY1}T10:00:00Z")
    say(container, tenant, "c1", "assistant", f"{DAY1}T10:00:30Z", metadata={"model": "gpt-4o"})
    say(container, tenant, "c1", "user", f"{DAY1}T10:02:00Z")
    say(container, tenant, "c1", "assistant", f"{DAY1}T10:05:00Z",
        metadata={"model": "gpt-4o", "satisfaction": 5})
    close(container, tenant, "c1", f"{DAY1}T10:10:00Z")
    # c2 (support, gpt-4o-mini): 60 s first response and duration; closed the next day.
    say(container, tenant, "c2", "user", f"{DAY1}T12:00:00Z")
    say(container, tenant, "c2", "assistant", f"{DAY1}T12:01:00Z",
        metadata={"model": "gpt-4o-mini"})
    close(container, tenant, "c2", f"{DAY2}T00:30:00Z")  # resolution 45,000 s
    # c3 (sales, no model): first response 10 s, a tool call, duration 40 s, rated 3.
    say(container, tenant, "c3", "user", f"{DAY2}T09:00:00Z", agent="sales")
    say(container, tenant, "c3", "assistant", f"{DAY2}T09:00:10Z", agent="sales")
    say(container, tenant, "c3", "tool", f"{DAY2}T09:00:20Z", agent="sales")
    say(container, tenant, "c3", "assistant", f"{DAY2}T09:00:40Z", agent="sales",
        metadata={"satisfaction": 3})
    close(container, tenant, "c3", f"{DAY2}T09:05:00Z")  # resolution 300 s
    # c4 (sales): still active in Redis, two messages.
    say(container, tenant, "c4", "user", f"{DAY2}T11:00:00Z", agent="sales")
    say(container, tenant, "c4", "assistant", f"{DAY2}T11:00:05Z", agent="sales")
    container.statistics.aggregate()
    return tenant


def stats(container: Container, path: str) -> dict:
    client = create_app(container=container).test_client()
    key = container.api_keys.create(None, admin=True)
    response = client.get(path, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def percentiles(measure: dict) -> tuple[float, float]:
    return measure["median"], measure["p90"]


def test_the_metrics_of_known_conversations(container: Container, known: str) -> None:
    with container.engine.begin() as connection:  # one dead letter of this tenant's, one not
        for tenant in (known, "someone-else"):
            connection.execute(dead_letters.insert().values(
                task_name="conversation.save_message", queue="conversation.save",
                kwargs={"tenant_id": tenant, "role": "wizard"}, error="invalid",
                created_at=datetime.now(UTC)))
    result = stats(container, f"/api/conversations/stats/{known}?group_by=day")
    assert result["dead_letters"] == 1
    totals = result["totals"]
    assert (totals["conversations"], totals["closed"]) == (4, 3)
    assert (totals["messages"], totals["messages_in"], totals["messages_out"]) == (12, 4, 5)
    assert totals["messages_per_conversation"] == 3.0
    with container.engine.connect() as connection:
        tokens = dict(connection.execute(
            select(messages_table.c.role, func.sum(messages_table.c.tokens))
            .where(messages_table.c.tenant_id == known).group_by(messages_table.c.role)).all())
    assert (totals["tokens_in"], totals["tokens_out"]) == (tokens["user"], tokens["assistant"])
    # Nearest-rank percentiles within the sketch's 1 %: durations 40, 60, 300.
    assert percentiles(totals["duration_seconds"]) == pytest.approx((60, 300), rel=0.011)
    assert percentiles(totals["first_response_seconds"]) == pytest.approx((30, 60), rel=0.011)
    assert percentiles(totals["resolution_seconds"]) == pytest.approx((600, 45_000), rel=0.011)
    assert (totals["satisfaction_avg"], totals["rated"]) == (4.0, 2)
    assert result["active_now"] == 1 and result["active_as_of"]

    day1, day2 = result["series"]
    assert (day1["period"], day1["conversations"], day1["closed"], day1["messages"]) == (
        DAY1, 2, 1, 6)
    # Day 2: c3 started, c4 is active; c2 (from day 1) and c3 closed.
    assert (day2["period"], day2["conversations"], day2["closed"], day2["messages"]) == (
        DAY2, 2, 2, 6)
    assert percentiles(day2["resolution_seconds"]) == pytest.approx((300, 45_000), rel=0.011)

    assert [(a["agent_id"], a["conversations"]) for a in result["agents"]] == [
        ("sales", 2), ("support", 2)]
    assert {m["model"]: m["conversations"] for m in result["models"]} == {
        "gpt-4o": 1, "gpt-4o-mini": 1, "unknown": 1}


def test_grouping_and_ranges(container: Container, known: str) -> None:
    weeks = stats(container, f"/api/conversations/stats/{known}?group_by=week")["series"]
    assert [(w["period"], w["conversations"]) for w in weeks] == [
        ("2026-10-26", 2), ("2026-11-02", 2)]
    months = stats(container, f"/api/conversations/stats/{known}?group_by=month")["series"]
    assert [(m["period"], m["conversations"], m["closed"]) for m in months] == [
        ("2026-11-01", 4, 3)]
    second_day = stats(container, f"/api/conversations/stats/{known}?from={DAY2}T00:00:00Z"
                                  f"&to=2026-11-03T00:00:00Z")["totals"]
    assert (second_day["conversations"], second_day["closed"]) == (2, 2)
    # A `to` inside a day includes that day: statistics are kept per UTC day.
    first_day = stats(container, f"/api/conversations/stats/{known}?to={DAY1}T18:00:00Z")
    assert first_day["totals"]["conversations"] == 2


def test_agent_stats(container: Container, known: str) -> None:
    support = stats(container, f"/api/agents/support/stats?tenant_id={known}")
    totals = support["totals"]
    assert (totals["conversations"], totals["closed"], totals["messages"]) == (2, 2, 6)
    assert percentiles(totals["first_response_seconds"]) == pytest.approx((30, 60), rel=0.011)
    assert {m["model"] for m in support["models"]} == {"gpt-4o", "gpt-4o-mini"}
    assert support["active_now"] == 0
    sales = stats(container, f"/api/agents/sales/stats?tenant_id={known}")
    assert (sales["totals"]["conversations"], sales["active_now"]) == (2, 1)


def test_aggregation_is_incremental_and_follows_late_messages_and_erasure(
    container: Container, known: str
) -> None:
    assert container.statistics.aggregate().buckets == 0  # nothing changed since
    c3 = container.repository.latest_conversation_for_session(known, "c3")
    # A late message naming the migrated conversation is appended in PostgreSQL.
    say(container, known, "c3", "user", f"{DAY2}T09:04:00Z", agent="sales", conversation_id=c3)
    report = container.statistics.aggregate()
    assert report.buckets == 1  # c3's day only (it started and closed on day 2)
    day2 = stats(container, f"/api/conversations/stats/{known}?from={DAY2}T00:00:00Z")["totals"]
    assert (day2["messages"], day2["messages_in"]) == (7, 2)

    c1 = container.repository.latest_conversation_for_session(known, "c1")
    assert c1 and c3 and container.eraser.erase_conversation(c1)
    container.statistics.aggregate()
    totals = stats(container, f"/api/conversations/stats/{known}")["totals"]
    assert (totals["conversations"], totals["closed"], totals["rated"]) == (3, 2, 1)
    with container.engine.connect() as connection:
        models = set(connection.scalars(select(stats_daily.c.model).where(
            stats_daily.c.tenant_id == known)))
    assert "gpt-4o" not in models  # c1 was the only gpt-4o conversation


def test_a_second_aggregator_skips_while_one_runs(container: Container, known: str) -> None:
    with container.engine.connect() as holder, holder.begin():
        assert holder.scalar(text(f"SELECT pg_try_advisory_xact_lock({AGGREGATOR_LOCK})"))
        report = container.statistics.aggregate()
        assert report.skipped and report.buckets == 0
        # The write path never waits for an aggregator: a migration commits meanwhile.
        say(container, known, "c5", "user", f"{DAY2}T15:00:00Z")
        close(container, known, "c5", f"{DAY2}T15:01:00Z")
    report = container.statistics.aggregate()
    assert not report.skipped and report.buckets == 1
    totals = stats(container, f"/api/conversations/stats/{known}")["totals"]
    assert (totals["conversations"], totals["closed"]) == (5, 4)


def test_answers_are_cached_per_rollup_generation_and_survive_redis_down(
    container: Container, known: str
) -> None:
    path = f"/api/conversations/stats/{known}"
    before = stats(container, path)["totals"]["messages"]
    with container.engine.begin() as connection:  # a change the rollup has not seen yet
        connection.execute(text(
            "UPDATE stats_daily SET messages = messages + 100 WHERE tenant_id = :t"
            " AND agent_id = '*' AND model = '*'"), {"t": known})
    assert stats(container, path)["totals"]["messages"] == before  # the cached answer
    container.stats_cache.invalidate()  # what each aggregate_stats run does
    assert stats(container, path)["totals"]["messages"] == before + 200  # two days' rows

    down = Container(dataclasses.replace(container.settings, redis_url="redis://127.0.0.1:1/0"))
    try:
        answer = stats(down, path)
        assert answer["totals"]["messages"] == before + 200  # computed, not cached
    finally:
        down.close()
