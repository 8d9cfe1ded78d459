"""The archive's (PostgreSQL's) writes: the migration's, and the save path's (a message for a
conversation already moved, the sessions' durable owners, and writes during an outage of the
active tier)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from conversation.domain.messages import Conversation, Message
from conversation.domain.stats import ConversationStats
from conversation.services.ports.values import SessionOwner, TenantConflict


class ArchiveWrites(Protocol):
    """Where a migration writes."""

    def store_conversation(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        stats: ConversationStats,
    ) -> list[TenantConflict]:
        """Write the conversation, its messages and stats in one transaction (idempotent)."""

    def store_conversations(
        self, batch: Sequence[tuple[Conversation, Sequence[Message], ConversationStats]]
    ) -> list[TenantConflict]:
        """Many conversations in one transaction (idempotent). A conversation whose id
        PostgreSQL holds for another tenant is left out, nothing of it written: returned.
        ConversationRefused when PostgreSQL refuses the data (the transaction is rolled back)."""

    def store_token_counts(
        self, conversation_id: str, encoding: str, counts: Mapping[str, int]
    ) -> None:
        """Keep messages' costs in another encoding (message id -> tokens; idempotent)."""


class ArchiveSaves(Protocol):
    """What the save path asks of the archive."""

    def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    def append_message(self, conversation_id: str, tenant_id: str, message: Message) -> bool:
        """Append to a persisted conversation of `tenant_id`; False for a message id already
        there. Raises ForeignConversation."""

    def claim_sessions(self, claims: Sequence[tuple[str, str]]) -> dict[str, SessionOwner]:
        """The durable owner of each (tenant, session) claimed, by session id: a session no
        tenant owns becomes the claiming tenant's (`new`)."""

    def stored_messages(
        self, wanted: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], str]:
        """Which of the (tenant, session, message id) the session's persisted conversations
        hold, with the conversation holding each (a save redelivered after its conversation
        migrated)."""

    def save_direct(
        self, conversation: Conversation, message: Message, explicit: bool
    ) -> tuple[str, bool]:
        """Redis is down: save straight into PostgreSQL, in the session's active conversation
        there (made if needed). Returns the conversation id and whether it was stored.
        Raises ForeignSession / ForeignConversation, and ActiveStoreUnavailable for an
        explicit conversation PostgreSQL does not know (it may be live in Redis)."""


class OutageCloses(Protocol):
    """A session's close, for what was written during an outage of the active tier."""

    def close_active(self, tenant_id: str, session_id: str, closed_at: str) -> list[str]:
        """Close the session's conversations written during an outage."""
