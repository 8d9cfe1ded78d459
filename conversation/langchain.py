"""LangChain integration: the service as a LangChain chat-message history.

    from langchain_core.runnables.history import RunnableWithMessageHistory
    from conversation.bootstrap import Container
    from conversation.langchain import ConversationChatHistory

    container = Container()
    chain = RunnableWithMessageHistory(
        prompt | model,
        lambda session_id: ConversationChatHistory(
            container, tenant_id="acme", session_id=session_id, agent_id="support-bot"),
    )

Reads come from whichever tier holds the conversation; writes go through the same save path as
`conversation.save_message` (validation, token counts, idempotency, ordering).
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from conversation.domain.messages import Message, NewMessage, Role
from tasks.schemas import SaveMessageSchema

_ROLES: dict[str, Role] = {
    "human": Role.USER,
    "ai": Role.ASSISTANT,
    "system": Role.SYSTEM,
    "tool": Role.TOOL,
}


def to_langchain(message: Message) -> BaseMessage:
    if message.role is Role.USER:
        return HumanMessage(message.content, name=message.name, id=message.id)
    if message.role is Role.ASSISTANT:
        return AIMessage(message.content, name=message.name, id=message.id)
    if message.role is Role.SYSTEM:
        return SystemMessage(message.content, name=message.name, id=message.id)
    return ToolMessage(
        message.content,
        tool_call_id=str(message.metadata.get("tool_call_id", "")),
        name=message.name,
        id=message.id,
    )


@lru_cache(maxsize=4)
def _save_schema(max_message_chars: int) -> SaveMessageSchema:
    return SaveMessageSchema(max_message_chars=max_message_chars)


class ConversationChatHistory(BaseChatMessageHistory):
    """One session's conversation in the service, as LangChain sees a chat history."""

    def __init__(
        self,
        container: Any,
        *,
        tenant_id: str,
        session_id: str,
        agent_id: str,
        conversation_id: str | None = None,
    ) -> None:
        self.container = container
        self.tenant_id = tenant_id
        self.session_id = session_id
        self.agent_id = agent_id
        self.conversation_id = conversation_id

    def _current_conversation(self) -> str | None:
        return self.conversation_id or self.container.active_store.session_conversation(
            self.tenant_id, self.session_id
        )

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        conversation_id = self._current_conversation()
        if conversation_id is None:
            return []
        active = self.container.active_store
        conversation = active.get_conversation(conversation_id)
        if conversation is not None:
            stored = active.messages(conversation_id)
        else:
            conversation = self.container.repository.get_conversation(conversation_id)
            if conversation is None:
                return []
            stored = self.container.repository.messages(conversation_id)
        if conversation.tenant_id != self.tenant_id:
            return []
        return [to_langchain(m) for m in stored]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        for message in messages:
            role = _ROLES.get(message.type)
            if role is None:
                raise ValueError(f"a {message.type!r} message has no role in the service")
            metadata: dict[str, Any] = {}
            if isinstance(message, ToolMessage):
                metadata["tool_call_id"] = message.tool_call_id
            content = message.text if not isinstance(message.content, str) else message.content
            message_id = message.id or uuid.uuid4().hex
            self._check(role, content, message_id, metadata, message.name)
            outcome = self.container.saver.save(
                NewMessage(
                    tenant_id=self.tenant_id,
                    session_id=self.session_id,
                    agent_id=self.agent_id,
                    role=role,
                    content=content,
                    message_id=message_id,
                    conversation_id=self.conversation_id,
                    metadata=metadata,
                    name=message.name,
                )
            )
            self.conversation_id = outcome.conversation_id

    def _check(self, role: Role, content: str, message_id: str, metadata: dict[str, Any],
               name: str | None) -> None:
        """The save task's own validation (tasks.schemas): what it refuses, storage cannot
        take either (a NUL in the text, an id with a newline...), so it is refused here too."""
        payload: dict[str, Any] = {
            "tenant_id": self.tenant_id, "session_id": self.session_id,
            "agent_id": self.agent_id, "role": role.value, "content": content,
            "message_id": message_id, "conversation_id": self.conversation_id,
            "metadata": metadata, "name": name,
        }
        errors = _save_schema(self.container.settings.max_message_chars).validate(payload)
        if errors:
            raise ValueError(f"the service refuses this message: {errors}")

    def clear(self) -> None:
        """Start a new conversation: the service keeps every conversation it was given."""
        self.conversation_id = uuid.uuid4().hex
