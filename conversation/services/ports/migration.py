"""The migration's two sides in the active tier: the queue of what is due, and the source
the migrator reads and clears. (What it writes is the archive's: ports.archive.ArchiveWrites.)"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from conversation.domain.messages import Conversation
from conversation.services.ports.values import MigrationLoad, SessionState


class MigrationQueue(Protocol):
    """What is due to migrate: closed sessions, timers that fired (ready), idle
    conversations; and the quarantine the sweeps skip. Moments are epoch seconds."""

    def closed_sessions_before(self, moment: float, limit: int) -> list[str]:
        """Sessions closed before `moment` whose migration is not done, oldest first."""

    def session_states(self, session_ids: Sequence[str]) -> list[SessionState | None]: ...

    def forget_closed_session(self, session_id: str) -> None: ...

    def mark_ready_many(self, requests: Sequence[tuple[str, int]]) -> None:
        """Migration timers fired: the (conversation, generation)s wait for the lead."""

    def ready_migrations(self, limit: int) -> list[tuple[str, int]]:
        """The oldest `limit` marked ready, with the generation each was marked with."""

    def forget_ready(self, requests: Sequence[tuple[str, int]]) -> None: ...

    def idle_conversations(self, before: float, limit: int) -> list[str]:
        """Active conversations whose last message was saved before `before`."""

    def forget_activity(self, conversation_id: str) -> None: ...

    def quarantined(self, conversation_ids: Sequence[str]) -> list[bool]: ...

    def release_quarantine(self, conversation_id: str) -> bool:
        """Take the conversation out of quarantine; False when it was not quarantined."""


class MigrationSource(Protocol):
    """What the migrator reads from the active tier, and clears once the archive holds it."""

    def message_counts(self, conversation_ids: Sequence[str]) -> list[int]:
        """Many conversations' message counts in one round trip (0: not active)."""

    def load_for_migration(self, conversation_ids: Sequence[str]) -> list[MigrationLoad | None]:
        """Each conversation with its session's state, messages, summary and token counts;
        None for one not active. ConversationRefused when one of them does not decode."""

    def finish_migrations(self, done: Sequence[tuple[Conversation, int]]) -> list[bool]:
        """Remove each conversation that still holds exactly the given number of messages
        (none arrived since it was loaded); a save to it then answers MOVED."""

    def release_sessions(self, sessions: Sequence[tuple[str, str, int]]) -> list[bool]:
        """Release each migrated (session, conversation, generation), only if the session is
        still at that conversation and generation: its next message starts a new one."""

    def quarantine(self, conversation_id: str, reason: str) -> None:
        """Set a conversation aside: kept as it is, skipped by the sweeps."""
