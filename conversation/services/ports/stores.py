"""The two stores as wholes: the union of the roles each adapter plays. For the adapters and
bootstrap (and the fakes' composition); a service names the roles it uses instead."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from conversation.domain.errors import ForeignSession
from conversation.services.ports.arrivals import Announcements
from conversation.services.ports.archive import ArchiveSaves, ArchiveWrites, OutageCloses
from conversation.services.ports.conversations import ActiveSaves, ActiveTier, ArchiveTier
from conversation.services.ports.jobs import ActiveSnapshot
from conversation.services.ports.migration import MigrationQueue, MigrationSource
from conversation.services.ports.retention import ActiveErasure, ArchiveErasure
from conversation.services.ports.sessions import Sessions
from conversation.services.ports.values import ClosedSession, SessionState


class ActiveStore(
    ActiveSaves,
    ActiveTier,
    Announcements,
    Sessions,
    MigrationQueue,
    MigrationSource,
    ActiveErasure,
    ActiveSnapshot,
    Protocol,
):
    """The active tier (Redis). Beyond its roles, single-item forms tests and tools use."""

    def close_session(
        self, tenant_id: str, session_id: str, closed_at: str
    ) -> ClosedSession | None: ...

    def close_sessions(
        self, requests: Sequence[tuple[str, str, str]]
    ) -> list[ClosedSession | None | ForeignSession]:
        """Many (tenant, session, closed_at) closes at once, each result in its place."""

    def session_state(self, session_id: str) -> SessionState | None: ...

    def release_session(self, session_id: str, conversation_id: str, generation: int) -> bool: ...

    def mark_ready(self, conversation_id: str, generation: int) -> None:
        """A migration timer fired: the conversation waits for the migration lead."""


class Repository(ArchiveTier, ArchiveWrites, ArchiveSaves, OutageCloses, ArchiveErasure, Protocol):
    """The archive (PostgreSQL)."""
