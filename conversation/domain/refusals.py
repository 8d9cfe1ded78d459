"""Refusals as values: what the service would not do, and why, from one list of reasons.

A batch's outcomes carry a refusal in the place of the item it refused (never an exception
instance in a list); where a single request is refused, the matching DomainError is raised
(`Refusal.error()`), so a task dead-letters it as before: same class name, same message.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from conversation.domain.errors import (
    ConversationNotFound,
    DomainError,
    ForeignConversation,
    ForeignSession,
)


class RefusalReason(StrEnum):
    FOREIGN_SESSION = "foreign_session"  # the session belongs to another tenant
    FOREIGN_CONVERSATION = "foreign_conversation"  # the conversation belongs to another tenant
    NOT_FOUND = "not_found"  # no such conversation (or none the tenant may see)
    REFUSED = "refused"  # any other domain refusal


_ERRORS: dict[RefusalReason, type[DomainError]] = {
    RefusalReason.FOREIGN_SESSION: ForeignSession,
    RefusalReason.FOREIGN_CONVERSATION: ForeignConversation,
    RefusalReason.NOT_FOUND: ConversationNotFound,
    RefusalReason.REFUSED: DomainError,
}


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    message: str

    def error(self) -> DomainError:
        """The exception to raise (or dead-letter) for it."""
        return _ERRORS[self.reason](self.message)

    @classmethod
    def of(cls, error: DomainError) -> Refusal:
        """The value of a refusal an adapter raised (or returned) as an exception."""
        for reason, kind in _ERRORS.items():
            if type(error) is kind:
                return cls(reason, str(error))
        return cls(RefusalReason.REFUSED, str(error))


def foreign_session(session_id: str) -> Refusal:
    return Refusal(RefusalReason.FOREIGN_SESSION,
                   f"session {session_id} belongs to another tenant")


def foreign_conversation(conversation_id: str) -> Refusal:
    return Refusal(RefusalReason.FOREIGN_CONVERSATION,
                   f"conversation {conversation_id} belongs to another tenant")
