"""One conversation with all its messages, from whichever tier holds it (the API's full
transcript)."""
from __future__ import annotations

from typing import Any

from conversation.domain.messages import Conversation
from conversation.services.tiers import Tiers


def conversation_summary(
    conversation: Conversation, message_count: int, last_message_at: str | None
) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "tenant_id": conversation.tenant_id,
        "session_id": conversation.session_id,
        "agent_id": conversation.agent_id,
        "status": str(conversation.status),
        "created_at": conversation.created_at,
        "closed_at": conversation.closed_at,
        "message_count": message_count,
        "last_message_at": last_message_at,
    }


class Transcripts:
    def __init__(self, tiers: Tiers) -> None:
        self.tiers = tiers

    def full_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """From whichever tier holds it: Redis while active, PostgreSQL once migrated. Raises
        ActiveStoreUnavailable for one PostgreSQL lacks while Redis is down (it may be live
        there: neither "not found" nor its messages can be told). Any tenant's: the caller
        checks the tenant (an admin key may read every one)."""
        located = self.tiers.find(conversation_id)
        if located is None:
            return None
        conversation, history = located.conversation, located.history.messages()
        last = history[-1].created_at if history else None
        return {
            **conversation_summary(conversation, len(history), last),
            "tier": str(located.tier),
            "summary": conversation.summary,
            "messages": [m.to_dict() for m in history],
        }
