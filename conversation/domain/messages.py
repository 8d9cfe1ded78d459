"""Messages and conversations as the service stores them."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ConversationStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


def utc_timestamp(moment: datetime) -> str:
    """A fixed-width ISO-8601 UTC string: sorting these strings sorts the instants."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def now_timestamp() -> str:
    return utc_timestamp(datetime.now(UTC))


_new_tuple = tuple.__new__
_NO_METADATA: dict[str, Any] = {}
_ROLES = {role.value: role for role in Role}


class Message(NamedTuple):
    """One chat message; `tokens` is its cost under `encoding`, counted once at save time.

    A named tuple, not a dataclass: a context read builds one per message it walks, and a
    tuple is several times cheaper to make. Treat `metadata` as read-only.
    """

    id: str
    role: Role
    content: str
    created_at: str
    tokens: int
    encoding: str
    name: str | None = None
    metadata: dict[str, Any] = _NO_METADATA
    agent_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "role": self.role.value,
            "content": self.content,
            "created_at": self.created_at,
            "tokens": self.tokens,
            "encoding": self.encoding,
        }
        if self.name is not None:
            data["name"] = self.name
        if self.metadata:
            data["metadata"] = self.metadata
        if self.agent_id is not None:
            data["agent_id"] = self.agent_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        get = data.get
        # tuple.__new__ straight away: a context read decodes a thousand of these, and the
        # NamedTuple constructor's keyword handling costs a third of each.
        return _new_tuple(cls, (
            data["id"],
            _ROLES[data["role"]],
            data["content"],
            data["created_at"],
            data["tokens"],
            data["encoding"],
            get("name"),
            get("metadata") or _NO_METADATA,
            get("agent_id"),
        ))


@dataclass(frozen=True)
class Conversation:
    id: str
    tenant_id: str
    session_id: str
    agent_id: str
    created_at: str
    status: ConversationStatus = ConversationStatus.ACTIVE
    closed_at: str | None = None
    summary: str | None = None
    summary_through: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "created_at": self.created_at,
            "status": str(self.status),
            "closed_at": self.closed_at,
            "summary": self.summary,
            "summary_through": self.summary_through,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversation:
        return cls(
            id=data["id"],
            tenant_id=data["tenant_id"],
            session_id=data["session_id"],
            agent_id=data["agent_id"],
            created_at=data["created_at"],
            status=ConversationStatus(data.get("status", "active")),
            closed_at=data.get("closed_at"),
            summary=data.get("summary"),
            summary_through=data.get("summary_through"),
        )


@dataclass(frozen=True)
class NewMessage:
    """A validated save_message command."""

    tenant_id: str
    session_id: str
    agent_id: str
    role: Role
    content: str
    message_id: str
    conversation_id: str | None = None
    created_at: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
