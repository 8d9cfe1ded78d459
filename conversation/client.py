"""A small client for upstream services: needs only `celery`, imports nothing of the service.

    from celery import Celery
    from conversation.client import ConversationClient

    client = ConversationClient(Celery(broker="redis://...", backend="redis://..."))
    client.save_message(tenant_id="acme", session_id="s-1", agent_id="support",
                        role="user", content="Hello")
    context = client.get_context(tenant_id="acme", session_id="s-1", model="gpt-4o")

Each helper publishes by task name to the contract's queue (CONTRACT.md section 1).
"""
from __future__ import annotations

from typing import Any, Literal

from celery import Celery

ROUTES: dict[str, str] = {
    "conversation.save_message": "conversation.save",
    "conversation.save_messages": "conversation.save",
    "conversation.get_context": "conversation.context",
    "conversation.session_closed": "conversation.sessions",
    "conversation.sessions_closed": "conversation.sessions",
    "conversation.session_opened": "conversation.sessions",
    "conversation.migrate_conversation": "conversation.migration",
    "conversation.aggregate_stats": "conversation.stats",
    "conversation.cleanup": "conversation.stats",
}

Role = Literal["system", "user", "assistant", "tool"]


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class ConversationClient:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def send(self, task: str, kwargs: dict[str, Any], **options: Any) -> Any:
        return self.app.send_task(task, kwargs=kwargs, queue=ROUTES[task], **options)

    def save_message(
        self,
        *,
        tenant_id: str,
        session_id: str,
        agent_id: str,
        role: Role,
        content: str,
        message_id: str | None = None,
        conversation_id: str | None = None,
        created_at: str | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.send("conversation.save_message", _drop_none({
            "tenant_id": tenant_id, "session_id": session_id, "agent_id": agent_id,
            "role": role, "content": content, "message_id": message_id,
            "conversation_id": conversation_id, "created_at": created_at,
            "metadata": metadata, "name": name,
        }))

    def save_messages(self, messages: list[dict[str, Any]]) -> None:
        self.send("conversation.save_messages", {"messages": messages})

    def get_context(
        self,
        *,
        tenant_id: str,
        conversation_id: str | None = None,
        session_id: str | None = None,
        model: str | None = None,
        window: str | None = None,
        max_tokens: int | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        kwargs = _drop_none(
            {"tenant_id": tenant_id, "conversation_id": conversation_id,
             "session_id": session_id, "model": model, "window": window,
             "max_tokens": max_tokens}
        )
        result = self.send("conversation.get_context", kwargs)
        try:
            return dict(result.get(timeout=timeout))
        finally:
            result.forget()

    def session_closed(self, *, tenant_id: str, session_id: str, closed_at: str | None = None) -> None:
        self.send("conversation.session_closed", _drop_none(
            {"tenant_id": tenant_id, "session_id": session_id, "closed_at": closed_at}))

    def sessions_closed(self, sessions: list[dict[str, Any]]) -> None:
        """Up to 1,000 closes in one task: each `{"tenant_id", "session_id"[, "closed_at"]}`."""
        self.send("conversation.sessions_closed", {"sessions": sessions})

    def session_opened(self, *, tenant_id: str, session_id: str) -> None:
        self.send("conversation.session_opened", {"tenant_id": tenant_id, "session_id": session_id})
