"""One conversation's reads in either tier, and the save path's writes to the active tier."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from conversation.domain.errors import ForeignSession
from conversation.domain.messages import Conversation, Message
from conversation.services.ports.arrivals import Arrivals
from conversation.services.ports.values import AppendResult, MessageRecord, Summary


class History(Protocol):
    """A conversation's messages in one tier, read from the newest back, as records."""

    def count(self) -> int: ...

    def first(self, encoding: str | None = None) -> MessageRecord | None: ...

    def newest_chunks(self, encoding: str | None = None) -> Iterator[list[MessageRecord]]:
        """The messages newest first, a list at a time (a read walks lists at C speed where it
        can). With `encoding`, records counted in another carry their stored cost in it
        (`other_tokens`) where an earlier read stored one (`first` alike)."""

    def store_counts(self, encoding: str, counts: Mapping[str, int]) -> None:
        """Store messages' costs (message id -> tokens) in `encoding`, counted on first use."""


class TierStore(Protocol):
    """What either tier answers about one conversation (the active store and the archive
    both do): Tiers reads through it whichever tier holds the conversation."""

    def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    def owned_history(self, conversation_id: str, expected: int = 64) -> tuple[str | None, History]:
        """The owner (None: not here) and the messages, read together (one round trip);
        `expected` is how many of the newest the caller will likely read."""

    def messages(self, conversation_id: str) -> list[Message]:
        """Oldest first: by created_at, then by arrival for messages of one instant."""

    def summary(self, conversation_id: str) -> Summary | None: ...

    def save_summary(self, conversation_id: str, summary: Summary) -> bool:
        """False when the conversation is not here (it moved meanwhile)."""


class ActiveTier(TierStore, Protocol):
    """The active tier's reads: also what only it knows (sessions, the tenant's list)."""

    def session_conversation(self, tenant_id: str, session_id: str) -> str | None: ...

    def has_message(self, tenant_id: str, conversation_id: str, message_id: str) -> bool | None:
        """Whether the tenant's active conversation holds the message; None when it is not
        active."""

    def active_conversations(self, tenant_id: str) -> list[Conversation]: ...

    def message_count(self, conversation_id: str) -> int: ...


class ArchiveTier(TierStore, Protocol):
    """The archive's (PostgreSQL's) reads."""

    def latest_conversation_for_session(self, tenant_id: str, session_id: str) -> str | None: ...

    def has_message(self, tenant_id: str, conversation_id: str, message_id: str) -> bool: ...


class ActiveReads(ActiveTier, Arrivals, Protocol):
    """The context read's side of the active tier: its reads, and waiting for a message."""


class ActiveSaves(Protocol):
    """The save path's writes to the active tier."""

    def save_in_session(
        self,
        conversation: Conversation,
        message: Message,
        *,
        explicit: bool,
        create: bool = False,
    ) -> tuple[AppendResult, str]:
        """Resolve the session's conversation (reopening a closed session) and append to it.

        `conversation.id` is the producer's id when `explicit`, else a candidate for a session
        without a conversation. An explicit conversation not active here is created only with
        `create`. Returns the result and the conversation id used. Raises ForeignSession.
        A message stored is announced to whoever waits for it (`listen_for`).
        """

    def save_many_in_session(
        self, items: Sequence[tuple[Conversation, Message, bool, bool]]
    ) -> list[tuple[AppendResult, str] | ForeignSession]:
        """`save_in_session` for many (conversation, message, explicit, create) items at once,
        in order; a refused session is returned in its item's place."""

    def announce_saved(self, tenant_id: str, message_ids: Sequence[str]) -> None:
        """Wake whoever waits for these messages, stored elsewhere (PostgreSQL)."""
