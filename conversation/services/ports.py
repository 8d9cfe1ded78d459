"""The ports the services use; adapters implement them, fakes stand in for them in unit tests."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any, Protocol

import msgspec

from conversation.domain.errors import ForeignSession
from conversation.domain.messages import Conversation, Message
from conversation.domain.stats import ConversationStats


class ActiveStoreUnavailable(ConnectionError):
    """The active store (Redis) cannot be reached: the services fall back to PostgreSQL.

    A ConnectionError, so a task that cannot fall back retries it like any transient failure.
    """


class ConversationRefused(Exception):
    """A store refused a conversation's data: a row PostgreSQL will not take (a NUL in
    jsonb, a constraint), or what Redis holds does not decode. Writing the same data again
    fails the same way, so migration sets the conversation aside instead of retrying it."""


class AppendResult(Enum):
    SAVED = "saved"
    DUPLICATE = "duplicate"  # the message id was saved before
    MOVED = "moved"  # the conversation has moved to PostgreSQL
    FOREIGN = "foreign"  # the conversation belongs to another tenant
    NOT_FOUND = "not_found"  # not active, and creating it was not asked for
    # The session has no conversation, and creating one was not asked for: the caller first
    # checks that the message was not stored by an earlier one, migrated since.
    NEW_CONVERSATION = "new_conversation"


@dataclass(frozen=True)
class SessionOwner:
    """A session's durable owner; `new` when the claim just made it (the session was never
    used before, so no conversation of it is persisted)."""

    tenant_id: str
    new: bool = False


@dataclass(frozen=True)
class TenantConflict:
    """A conversation id that PostgreSQL holds for another tenant: never merged into."""

    conversation_id: str
    tenant_id: str  # the tenant whose conversation was refused

    @property
    def reason(self) -> str:
        return (f"conversation {self.conversation_id} of tenant {self.tenant_id}: its id "
                "belongs to another tenant in PostgreSQL")


@dataclass(frozen=True)
class SessionState:
    tenant_id: str
    conversation_id: str | None
    generation: int
    closed_at: str | None


@dataclass(frozen=True)
class ClosedSession:
    conversation_id: str
    generation: int


@dataclass(frozen=True)
class Summary:
    text: str
    through: str  # message_key of the last message the summary covers


@dataclass(frozen=True)
class MigrationLoad:
    """What migrating one conversation needs from the active store."""

    conversation: Conversation
    session: SessionState | None
    messages: list[Message]
    summary: Summary | None
    # Costs in other encodings counted on first use: encoding -> message id -> tokens.
    token_counts: dict[str, dict[str, int]] = field(default_factory=dict)


class MessageRecord(msgspec.Struct):
    """A stored message as a context read walks it: the contract's Message JSON, decoded with
    only the fields a read uses (metadata and agent_id are skipped). A read decodes a thousand
    of these; as a msgspec Struct that costs about half of decoding dicts, and building Message
    tuples was a third of a read."""

    id: str
    role: str
    content: str
    created_at: str
    tokens: int  # counted at save time, in `encoding`
    encoding: str
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    # Its cost in the encoding a read asked for, when that is not `encoding` and an earlier
    # read stored it.
    other_tokens: int | None = None


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


class ActiveStore(Protocol):
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

    def close_session(
        self, tenant_id: str, session_id: str, closed_at: str
    ) -> ClosedSession | None: ...

    def close_sessions(
        self, requests: Sequence[tuple[str, str, str]]
    ) -> list[ClosedSession | None | ForeignSession]:
        """Many (tenant, session, closed_at) closes at once, each result in its place."""

    def close_sessions_into_timers(
        self, requests: Sequence[tuple[str, str, str, str, int]], keep_seconds: int
    ) -> tuple[list[ClosedSession | None | ForeignSession], list[int]]:
        """Close (tenant, session, closed_at, closed epoch, second) and add each closed one
        to its second's bucket: the results in place, and the seconds whose timer it armed."""

    def arm_close_timers(
        self, members: Mapping[int, Sequence[str]], keep_seconds: int
    ) -> list[int]:
        """Add members to their second's bucket; the seconds whose shared timer this armed."""

    def take_close_timer(self, second: int) -> list[str]:
        """Disarm a second's timer and read its bucket's members."""

    def forget_close_timer_members(self, second: int, members: Sequence[str]) -> None: ...

    def open_session(self, tenant_id: str, session_id: str) -> bool: ...

    def session_state(self, session_id: str) -> SessionState | None: ...

    def session_states(self, session_ids: Sequence[str]) -> list[SessionState | None]: ...

    def session_conversation(self, tenant_id: str, session_id: str) -> str | None: ...

    def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    def owned_history(self, conversation_id: str, expected: int = 64) -> tuple[str | None, History]:
        """The owner (None: not here) and the messages, read together (one round trip);
        `expected` is how many of the newest the caller will likely read."""

    def messages(self, conversation_id: str) -> list[Message]: ...

    def load_for_migration(self, conversation_ids: Sequence[str]) -> list[MigrationLoad | None]:
        """ConversationRefused when one of them does not decode."""

    def finish_migrations(self, done: Sequence[tuple[Conversation, int]]) -> list[bool]:
        """Remove each conversation that still holds exactly the given number of messages."""

    def release_session(self, session_id: str, conversation_id: str, generation: int) -> bool: ...

    def release_sessions(self, sessions: Sequence[tuple[str, str, int]]) -> list[bool]: ...

    def active_conversations(self, tenant_id: str) -> list[Conversation]: ...

    def active_snapshot(self) -> list[tuple[Conversation, int]]:
        """Every active conversation with its message count."""

    def closed_sessions_before(self, moment: float, limit: int) -> list[str]: ...

    def idle_conversations(self, before: float, limit: int) -> list[str]: ...

    def forget_activity(self, conversation_id: str) -> None: ...

    def erase_conversation(self, conversation_id: str) -> bool: ...

    def erase_tenant_sessions(self, tenant_id: str) -> int: ...

    def forget_closed_session(self, session_id: str) -> None: ...

    def mark_ready(self, conversation_id: str, generation: int) -> None:
        """A migration timer fired: the conversation waits for the migration lead."""

    def mark_ready_many(self, requests: Sequence[tuple[str, int]]) -> None: ...

    def ready_migrations(self, limit: int) -> list[tuple[str, int]]: ...

    def forget_ready(self, requests: Sequence[tuple[str, int]]) -> None: ...

    def message_count(self, conversation_id: str) -> int: ...

    def quarantine(self, conversation_id: str, reason: str) -> None:
        """Set a conversation aside: kept as it is, skipped by the sweeps."""

    def quarantined(self, conversation_ids: Sequence[str]) -> list[bool]: ...

    def release_quarantine(self, conversation_id: str) -> bool:
        """Take the conversation out of quarantine; False when it was not quarantined."""

    def message_counts(self, conversation_ids: Sequence[str]) -> list[int]:
        """Many conversations' message counts in one round trip."""

    def summary(self, conversation_id: str) -> Summary | None: ...

    def save_summary(self, conversation_id: str, summary: Summary) -> bool:
        """False when the conversation is not here (it moved meanwhile)."""

    def has_message(self, tenant_id: str, conversation_id: str, message_id: str) -> bool | None:
        """Whether the tenant's active conversation holds the message; None when it is not
        active."""

    def announce_saved(self, tenant_id: str, message_ids: Sequence[str]) -> None:
        """Wake whoever waits for these messages, stored elsewhere (PostgreSQL)."""

    def listen_for(self, tenant_id: str, message_id: str) -> ArrivalListener:
        """Listen for the message's announcement (subscribed once this returns)."""


class ArrivalListener(Protocol):
    def wait(self, seconds: float) -> bool:
        """True on the message's announcement (it is stored); False after `seconds`, or early
        for another reason (look again)."""

    def close(self) -> None: ...


class Repository(Protocol):
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

    def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    def owned_history(self, conversation_id: str, expected: int = 64) -> tuple[str | None, History]:
        """The owner (None: not here) and the messages, read together; `expected` is how many
        of the newest the caller will likely read."""

    def messages(self, conversation_id: str) -> list[Message]: ...

    def latest_conversation_for_session(self, tenant_id: str, session_id: str) -> str | None: ...

    def has_message(self, tenant_id: str, conversation_id: str, message_id: str) -> bool: ...

    def save_direct(
        self, conversation: Conversation, message: Message, explicit: bool
    ) -> tuple[str, bool]:
        """Redis is down: save straight into PostgreSQL, in the session's active conversation
        there (made if needed). Returns the conversation id and whether it was stored.
        Raises ForeignSession / ForeignConversation, and ActiveStoreUnavailable for an
        explicit conversation PostgreSQL does not know (it may be live in Redis)."""

    def close_active(self, tenant_id: str, session_id: str, closed_at: str) -> list[str]:
        """Close the session's conversations written during an outage."""

    def erase_conversation(self, conversation_id: str) -> bool: ...

    def erase_tenant(self, tenant_id: str) -> dict[str, int]:
        """Everything of the tenant: conversations, messages, dead letters, derived rows; its
        API keys revoked. Counts by kind."""

    def erase_dead_letters(
        self, tenant_id: str, conversation_id: str | None = None, session_id: str | None = None
    ) -> int:
        """The dead letters (or a batch's items) holding the conversation's data, or the
        tenant's (conversation_id None)."""

    def conversation_ids(self, tenant_id: str) -> list[str]: ...

    def set_retention(self, tenant_id: str, days: int | None) -> None: ...

    def retention(self) -> dict[str, int]: ...

    def expired_conversations(self, tenant_id: str, before: datetime, limit: int) -> list[str]: ...

    def summary(self, conversation_id: str) -> Summary | None: ...

    def save_summary(self, conversation_id: str, summary: Summary) -> bool: ...


class QueuedDeadLetters(Protocol):
    def erase_queued(self, edit: Callable[[Any], Any]) -> int:
        """Rewrite each queued dead letter's task payload through `edit` (None: drop it)."""


class Tokenizer(Protocol):
    def encoding_for(self, model: str | None) -> str: ...

    def message_cost(
        self,
        role: str,
        content: str,
        name: str | None,
        encoding: str,
        tool_calls: Sequence[dict[str, Any]] | None = None,
        tool_call_id: str | None = None,
    ) -> int: ...


class Scheduler(Protocol):
    def schedule_close_timer(self, second: int, countdown: float) -> None:
        """The shared timer of the sessions whose grace ends within `second` (epoch)."""


class Summariser(Protocol):
    def summarise(self, previous: str | None, messages: Sequence[Message], max_tokens: int) -> str:
        """An updated summary of `previous` plus `messages`, at most `max_tokens` long."""


class SummaryRequests(Protocol):
    def request(self, conversation_id: str, budget: int) -> None:
        """Ask for the conversation's summary to be brought up to date, asynchronously."""


class Locks(Protocol):
    def acquire(self, name: str, seconds: int) -> str | None: ...

    def release(self, name: str, token: str) -> None: ...


class StatisticsStore(Protocol):
    def recompute_changed(self) -> int | None:
        """Recompute the rollup buckets changed since the last pass (None: another holds it)."""

    def replace_active(self, counts: dict[tuple[str, date, str], tuple[int, int]]) -> None:
        """Replace the active snapshot: (tenant, day, agent) -> (conversations, messages)."""


class CachedAnswers(Protocol):
    def invalidate(self) -> None:
        """Answers computed from the rollup before now are stale."""
