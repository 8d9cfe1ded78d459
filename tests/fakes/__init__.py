"""In-memory stand-ins for the ports, for unit tests: one fake per role port
(services.ports), each over its store's memory (active: Redis's, archive: PostgreSQL's), and
the whole stores composed of them. tests/contract holds each to the adapters' behaviour."""
from __future__ import annotations

from tests.fakes.active import (
    ActiveMemory,
    FakeActiveErasure,
    FakeActiveSaves,
    FakeActiveSnapshot,
    FakeActiveStore,
    FakeActiveTier,
    FakeArrivals,
    FakeListener,
    FakeMigrationQueue,
    FakeMigrationSource,
    FakeSessions,
    SessionRecord,
)
from tests.fakes.archive import (
    ArchiveMemory,
    FakeArchiveErasure,
    FakeArchiveSaves,
    FakeArchiveTier,
    FakeArchiveWrites,
    FakeOutageCloses,
    FakeRepository,
)
from tests.fakes.helpers import (
    CountingAnswers,
    FakeLocks,
    FakeStatisticsStore,
    JoiningSummariser,
    RecordingScheduler,
    RecordingSummaryRequests,
    TwoEncodingTokenizer,
    UnreachableStore,
    WordTokenizer,
    payload,
)
from tests.fakes.history import ListHistory, message_record

__all__ = [
    "ActiveMemory", "ArchiveMemory", "CountingAnswers", "FakeActiveErasure", "FakeActiveSaves",
    "FakeActiveSnapshot", "FakeActiveStore", "FakeActiveTier", "FakeArchiveErasure",
    "FakeArchiveSaves", "FakeArchiveTier", "FakeArchiveWrites", "FakeArrivals", "FakeListener",
    "FakeLocks", "FakeMigrationQueue", "FakeMigrationSource", "FakeOutageCloses",
    "FakeRepository", "FakeSessions", "FakeStatisticsStore", "JoiningSummariser", "ListHistory",
    "RecordingScheduler", "RecordingSummaryRequests", "SessionRecord", "TwoEncodingTokenizer",
    "UnreachableStore", "WordTokenizer", "message_record", "payload",
]
