"""Each fake is its port, by type: mypy (`make lint`) checks these assignments, so a method
added to or changed on a port fails the lint until its fake follows (tests/contract then
says whether the fake behaves as the adapters do). Nothing runs here."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conversation.services import ports
    from tests import fakes

    active_saves: ports.ActiveSaves = fakes.FakeActiveSaves()
    arrivals: ports.Arrivals = fakes.FakeArrivals()
    active_tier: ports.ActiveTier = fakes.FakeActiveTier()
    sessions: ports.Sessions = fakes.FakeSessions()
    migration_queue: ports.MigrationQueue = fakes.FakeMigrationQueue()
    migration_source: ports.MigrationSource = fakes.FakeMigrationSource()
    active_erasure: ports.ActiveErasure = fakes.FakeActiveErasure()
    active_snapshot: ports.ActiveSnapshot = fakes.FakeActiveSnapshot()
    active_store: ports.ActiveStore = fakes.FakeActiveStore()
    archive_tier: ports.ArchiveTier = fakes.FakeArchiveTier()
    archive_writes: ports.ArchiveWrites = fakes.FakeArchiveWrites()
    archive_saves: ports.ArchiveSaves = fakes.FakeArchiveSaves()
    outage_closes: ports.OutageCloses = fakes.FakeOutageCloses()
    archive_erasure: ports.ArchiveErasure = fakes.FakeArchiveErasure()
    repository: ports.Repository = fakes.FakeRepository()
    scheduler: ports.Scheduler = fakes.RecordingScheduler()
    tokenizer: ports.Tokenizer = fakes.WordTokenizer()
    locks: ports.Locks = fakes.FakeLocks()
    summariser: ports.Summariser = fakes.JoiningSummariser()
    summary_requests: ports.SummaryRequests = fakes.RecordingSummaryRequests()
    statistics: ports.StatisticsStore = fakes.FakeStatisticsStore()
    answers: ports.CachedAnswers = fakes.CountingAnswers()
