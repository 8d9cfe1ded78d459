"""A small client for upstream services: needs only `celery`, imports nothing of the service.

    from celery import Celery
    from conversation.client import ConversationClient

    client = ConversationClient(Celery(broker="redis://...", backend="redis://..."))
    client.save_message(tenant_id="acme", session_id="s-1", agent_id="support",
                        role="user", content="Hello")
    context = client.get_context(tenant_id="acme", session_id="s-1", model="gpt-4o")

A tool-using turn, reading its own writes (`wait_for_message_id`: the context waits, at most
2 s, for the message just sent; README, "Tool calls, and reading your own writes"):

    turn = {"tenant_id": "acme", "session_id": "s-1", "agent_id": "support"}
    asked = client.save_message(**turn, role="user", content="Where is order 4521?")
    context = client.get_context(tenant_id="acme", session_id="s-1", model="gpt-4o",
                                 wait_for_message_id=asked)
    reply = openai.chat.completions.create(model="gpt-4o", messages=context["messages"],
                                           tools=TOOLS).choices[0].message
    # The calls and their results in one task: stored together, in order.
    calls = [{**turn, "role": "assistant", "content": reply.content or "",
              "tool_calls": [call.model_dump() for call in reply.tool_calls]}]
    calls += [{**turn, "role": "tool", "tool_call_id": call.id,
               "content": run_tool(call.function.name, json.loads(call.function.arguments))}
              for call in reply.tool_calls]
    calls[-1]["message_id"] = last = uuid.uuid4().hex
    client.save_messages(calls)
    context = client.get_context(tenant_id="acme", session_id="s-1", model="gpt-4o",
                                 wait_for_message_id=last)  # ready for the model's answer

Each helper publishes by task name to the contract's queue (CONTRACT.md section 1).
"""
from __future__ import annotations

import uuid
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
        tool_calls: list[dict[str, Any]] | None = None,
        tool_call_id: str | None = None,
    ) -> str:
        """Send the save; returns its message id (made here when not given), which
        `get_context(wait_for_message_id=...)` can wait for. `tool_calls` (an assistant's)
        in Chat Completions' shape, `arguments` as JSON text; `tool_call_id` on a tool
        message."""
        message_id = message_id or uuid.uuid4().hex
        self.send("conversation.save_message", _drop_none({
            "tenant_id": tenant_id, "session_id": session_id, "agent_id": agent_id,
            "role": role, "content": content, "message_id": message_id,
            "conversation_id": conversation_id, "created_at": created_at,
            "metadata": metadata, "name": name, "tool_calls": tool_calls,
            "tool_call_id": tool_call_id,
        }))
        return message_id

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
        wait_for_message_id: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The context; with `wait_for_message_id`, once that message is stored (at most
        2 s of waiting: else without it, and `"waited_for": "missing"`)."""
        kwargs = _drop_none(
            {"tenant_id": tenant_id, "conversation_id": conversation_id,
             "session_id": session_id, "model": model, "window": window,
             "max_tokens": max_tokens, "wait_for_message_id": wait_for_message_id}
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
