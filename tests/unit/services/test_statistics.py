"""StatisticsAggregator on the fakes: the rollup worked off in passes, the active snapshot."""
from __future__ import annotations

from datetime import date

from conversation.services.save import MessageSaver
from conversation.services.statistics import MAX_PASSES, StatisticsAggregator
from tests.fakes import CountingAnswers, FakeStatisticsStore, UnreachableStore, WordTokenizer
from tests.unit.services.conftest import command


def test_the_backlog_is_worked_off_and_the_active_ones_counted(active, archive) -> None:
    saver = MessageSaver(active, archive, WordTokenizer())
    saver.save(command("a", created_at="2026-01-01T10:00:00Z"))
    saver.save(command("b", created_at="2026-01-01T10:00:01Z"))
    saver.save(command("c", session_id="s-2", agent_id="sales",
                       created_at="2026-01-02T10:00:00Z"))
    store, answers = FakeStatisticsStore(changed=2500, per_pass=1000), CountingAnswers()
    report = StatisticsAggregator(active, store, answers).aggregate()
    assert (report.buckets, report.active_conversations, report.skipped) == (2500, 2, False)
    assert store.active == {("acme", date(2026, 1, 1), "support"): (1, 2),
                            ("acme", date(2026, 1, 2), "sales"): (1, 1)}
    assert answers.invalidations == 1


def test_a_run_stops_after_its_passes(active) -> None:
    store = FakeStatisticsStore(changed=10 * MAX_PASSES + 5, per_pass=10)
    assert StatisticsAggregator(active, store).aggregate().buckets == 10 * MAX_PASSES
    assert store.changed == 5


def test_another_aggregator_holding_the_rollup_skips_the_run(active) -> None:
    store = FakeStatisticsStore(changed=5, locked=True)
    report = StatisticsAggregator(active, store).aggregate()
    assert report.skipped and store.active is None


def test_with_the_active_tier_down_the_last_snapshot_stays(archive) -> None:
    store = FakeStatisticsStore(changed=1)
    report = StatisticsAggregator(UnreachableStore(), store).aggregate()  # type: ignore[arg-type]
    assert (report.buckets, report.active_conversations, store.active) == (1, None, None)
