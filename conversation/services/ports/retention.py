"""Erasure and retention: what each tier removes, and the dead-letter queue's copies."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from conversation.domain.messages import Conversation


class ActiveErasure(Protocol):
    """The active tier's part of an erasure."""

    def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    def active_conversations(self, tenant_id: str) -> list[Conversation]: ...

    def erase_conversation(self, conversation_id: str) -> bool:
        """Every trace of the conversation, active or migrated (its marker), and its
        session's records while they still point at it. True if anything was there."""

    def erase_tenant_sessions(self, tenant_id: str) -> int:
        """Forget the tenant's sessions (ownership, generations); how many."""


class ArchiveErasure(Protocol):
    """The archive's part of an erasure, and the tenants' retention."""

    def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    def erase_conversation(self, conversation_id: str) -> bool: ...

    def erase_tenant(self, tenant_id: str) -> dict[str, int]:
        """Everything of the tenant: conversations, messages, dead letters, derived rows; its
        API keys revoked. Counts by kind ("conversations", "dead_letters", "api_keys"...)."""

    def erase_dead_letters(
        self, tenant_id: str, conversation_id: str | None = None, session_id: str | None = None
    ) -> int:
        """The dead letters (or a batch's items) holding the conversation's data, or the
        tenant's (conversation_id None)."""

    def conversation_ids(self, tenant_id: str) -> list[str]: ...

    def set_retention(self, tenant_id: str, days: int | None) -> None:
        """Keep the tenant's conversations `days` (None: for ever)."""

    def retention(self) -> dict[str, int]:
        """The tenants with a retention, in days."""

    def expired_conversations(self, tenant_id: str, before: datetime, limit: int) -> list[str]:
        """The tenant's persisted conversations whose last message (or start) is older than
        `before`."""


class QueuedDeadLetters(Protocol):
    def erase_queued(self, edit: Callable[[Any], Any]) -> int:
        """Rewrite each queued dead letter's task payload through `edit` (None: drop it)."""
