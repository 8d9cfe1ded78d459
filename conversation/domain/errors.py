"""Domain errors: each says what was refused and why."""
from __future__ import annotations


class DomainError(Exception):
    """A request the service refuses; never retried."""


class ForeignSession(DomainError):
    """The session belongs to another tenant."""


class ForeignConversation(DomainError):
    """The conversation belongs to another tenant."""


class ConversationNotFound(DomainError):
    pass
