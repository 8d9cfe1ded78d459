"""The statistics worker's job: keep the rollup current, incrementally, off the write path."""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from conversation.domain.messages import parse_timestamp
from conversation.services.ports import (
    ActiveSnapshot,
    ActiveStoreUnavailable,
    CachedAnswers,
    StatisticsStore,
)

log = logging.getLogger(__name__)

# A pass recomputes up to a few thousand buckets; a backlog (a first run over old data) is
# worked off in passes within one run, bounded so a run never outlives the beat interval much.
MAX_PASSES = 20


@dataclass(frozen=True)
class AggregationReport:
    buckets: int  # (tenant, day) buckets recomputed
    active_conversations: int | None  # None: Redis was down, the last snapshot stays
    skipped: bool = False  # another aggregator held the lock


class StatisticsAggregator:
    def __init__(
        self, active: ActiveSnapshot, store: StatisticsStore, answers: CachedAnswers | None = None
    ) -> None:
        self.active = active
        self.store = store
        self.answers = answers

    def aggregate(self) -> AggregationReport:
        buckets = 0
        for _ in range(MAX_PASSES):
            done = self.store.recompute_changed()
            if done is None:
                return AggregationReport(buckets, None, skipped=True)
            buckets += done
            if done == 0:
                break
        report = AggregationReport(buckets, self.snapshot_active())
        if self.answers is not None:
            try:
                self.answers.invalidate()
            except ActiveStoreUnavailable:
                pass  # no cache is served while Redis is down either
        return report

    def snapshot_active(self) -> int | None:
        """Count the conversations still in Redis by tenant, day started and agent."""
        try:
            snapshot = self.active.active_snapshot()
        except ActiveStoreUnavailable:
            log.warning("statistics: Redis is unavailable; active counts keep their last value")
            return None
        counts: dict[tuple[str, date, str], tuple[int, int]] = defaultdict(lambda: (0, 0))
        for conversation, messages in snapshot:
            key = (conversation.tenant_id, parse_timestamp(conversation.created_at).date(),
                   conversation.agent_id)
            conversations_so_far, messages_so_far = counts[key]
            counts[key] = (conversations_so_far + 1, messages_so_far + messages)
        self.store.replace_active(dict(counts))
        return len(snapshot)
