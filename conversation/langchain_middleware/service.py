"""The service the middleware talks to: in-process (a `Container`) or remote (Celery by task
name). The in-process mode imports the service when it is built, never at module level: the
remote mode needs nothing of it but its client."""
from __future__ import annotations

from typing import Any

from conversation.client import ConversationClient


class ServiceFailure(Exception):
    """The service did not answer as it should (unreachable, a refusal, an empty context)."""


class _InProcess:
    """The service's own objects, called directly (a `Container`)."""

    remote = False

    def __init__(self, container: Any) -> None:
        from conversation.domain.messages import NewMessage, Role
        from conversation.langchain import _save_schema

        self.container = container
        self._new_message = NewMessage
        self._role = Role
        self._schema = _save_schema

    def save(self, payloads: list[dict[str, Any]]) -> None:
        from marshmallow import ValidationError

        schema = self._schema(self.container.settings.max_message_chars)
        commands = []
        for payload in payloads:
            try:
                item = schema.load(payload)  # the save task's own validation
            except ValidationError as exc:
                raise ServiceFailure(f"the service refuses a message: {exc.messages}") from None
            commands.append(self._new_message(
                tenant_id=item["tenant_id"], session_id=item["session_id"],
                agent_id=item["agent_id"], role=self._role(item["role"]),
                content=item["content"], message_id=item["message_id"],
                conversation_id=item["conversation_id"], created_at=item["created_at"],
                metadata=item["metadata"] or {}, name=item["name"],
                tool_calls=item["tool_calls"], tool_call_id=item["tool_call_id"]))
        for outcome in self.container.saver.save_many(commands):
            if isinstance(outcome, Exception):
                raise ServiceFailure(f"the service refused a message: {outcome}")

    def context(self, *, wait_for: str | None, **kwargs: Any) -> dict[str, Any]:
        # A save here is done when it returns: nothing to wait for.
        return dict(self.container.context_builder.get_context(**kwargs))


class _Remote:
    """The service through Celery, by task name (CONTRACT section 1)."""

    remote = True

    def __init__(self, client: ConversationClient, timeout: float) -> None:
        self.client = client
        self.timeout = timeout

    def save(self, payloads: list[dict[str, Any]]) -> None:
        # One task: a batch is stored in order, in one round trip, so waiting for its last
        # message is waiting for all of them.
        if len(payloads) == 1:
            self.client.save_message(**payloads[0])
        else:
            self.client.save_messages(payloads)

    def context(self, *, wait_for: str | None, **kwargs: Any) -> dict[str, Any]:
        return self.client.get_context(**kwargs, wait_for_message_id=wait_for,
                                       timeout=self.timeout)
