"""The ports the services use: small roles, each what one service needs of a store
(conversations, arrivals, sessions, migration, archive, retention, jobs, models), the values
they speak in, and each store as the union of its roles (stores). Adapters implement them;
tests/fakes stands in for them, and tests/contract holds both to the same suite."""
from __future__ import annotations

from conversation.services.ports.archive import ArchiveSaves, ArchiveWrites, OutageCloses
from conversation.services.ports.arrivals import Announcements, ArrivalListener, Arrivals
from conversation.services.ports.conversations import (
    ActiveReads,
    ActiveSaves,
    ActiveTier,
    ArchiveTier,
    History,
    TierStore,
)
from conversation.services.ports.jobs import (
    ActiveSnapshot,
    CachedAnswers,
    Locks,
    Scheduler,
    StatisticsStore,
    SummaryRequests,
)
from conversation.services.ports.migration import MigrationQueue, MigrationSource
from conversation.services.ports.models import Summariser, Tokenizer
from conversation.services.ports.retention import ActiveErasure, ArchiveErasure, QueuedDeadLetters
from conversation.services.ports.sessions import Sessions
from conversation.services.ports.stores import ActiveStore, Repository
from conversation.services.ports.values import (
    ActiveStoreUnavailable,
    AppendResult,
    ClosedSession,
    ConversationRefused,
    MessageRecord,
    MigrationLoad,
    SessionOwner,
    SessionState,
    Summary,
    TenantConflict,
)

__all__ = [
    "ActiveErasure",
    "ActiveReads",
    "ActiveSaves",
    "ActiveSnapshot",
    "ActiveStore",
    "ActiveStoreUnavailable",
    "ActiveTier",
    "Announcements",
    "AppendResult",
    "ArchiveErasure",
    "ArchiveSaves",
    "ArchiveTier",
    "ArchiveWrites",
    "ArrivalListener",
    "Arrivals",
    "CachedAnswers",
    "ClosedSession",
    "ConversationRefused",
    "History",
    "Locks",
    "MessageRecord",
    "MigrationLoad",
    "MigrationQueue",
    "MigrationSource",
    "OutageCloses",
    "QueuedDeadLetters",
    "Repository",
    "Scheduler",
    "SessionOwner",
    "SessionState",
    "Sessions",
    "StatisticsStore",
    "Summariser",
    "Summary",
    "SummaryRequests",
    "TenantConflict",
    "TierStore",
    "Tokenizer",
]
