"""The values and errors the ports speak in: what crosses between services and stores."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgspec

from conversation.domain.messages import Conversation, Message


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
