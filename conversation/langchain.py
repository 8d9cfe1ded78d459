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

`RunnableWithMessageHistory` is deprecated in LangChain 1.x: an agent built with
`langchain.agents.create_agent` takes the service as its memory through
`conversation.langchain_middleware.ConversationMemory` instead.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call
from marshmallow import ValidationError

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
        calls, invalid = _langchain_tool_calls(message.tool_calls or [])
        # The calls as stored too, arguments as the model wrote them (LangChain's OpenAI
        # integration keeps them there the same way): what the contract counts, since `args`
        # written back by json.dumps may differ from the text ('{"a":1}' vs '{"a": 1}').
        raw = {"tool_calls": [{**call, "function": dict(call["function"])}
                              for call in message.tool_calls]} if message.tool_calls else {}
        return AIMessage(message.content, name=message.name, id=message.id,
                         tool_calls=calls, invalid_tool_calls=invalid, additional_kwargs=raw)
    if message.role is Role.SYSTEM:
        return SystemMessage(message.content, name=message.name, id=message.id)
    return ToolMessage(
        message.content,
        # Before issue 17 the id could only travel in metadata: those messages keep theirs.
        tool_call_id=message.tool_call_id or str(message.metadata.get("tool_call_id", "")),
        name=message.name,
        id=message.id,
    )


def _langchain_tool_calls(
    stored: list[dict[str, Any]],
) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    """Chat Completions' calls as LangChain's: `args` a dict parsed from the JSON text; a call
    whose arguments are not a JSON object is an `InvalidToolCall` (LangChain's own rule), with
    its text kept as it is."""
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for call in stored:
        function = call["function"]
        try:
            args = json.loads(function["arguments"])
        except (ValueError, RecursionError):
            # RecursionError: nesting too deep to parse, saved before the schema capped it.
            args = None
        if isinstance(args, dict):
            calls.append(tool_call(name=function["name"], args=args, id=call["id"]))
        else:
            invalid.append(invalid_tool_call(name=function["name"], args=function["arguments"],
                                             id=call["id"], error=None))
    return calls, invalid


def _stored_tool_calls(message: AIMessage) -> list[dict[str, Any]] | None:
    """LangChain's calls in Chat Completions' shape, `args` written as LangChain's own
    `convert_to_openai_messages` writes them (so a round trip gives the same text back)."""
    stored = [
        _function_call(call["id"], call["name"], json.dumps(call["args"], ensure_ascii=False))
        for call in message.tool_calls
    ]
    stored += [
        _function_call(call["id"], call["name"] or "", call["args"] or "")
        for call in message.invalid_tool_calls
    ]
    return stored or None


def _function_call(call_id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    # A call LangChain made without an id (some providers give none) gets one: nothing could
    # answer it otherwise, and the service needs one per call.
    return {"id": call_id or f"call_{uuid.uuid4().hex}", "type": "function",
            "function": {"name": name, "arguments": arguments}}


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
        # Another tenant's conversation reads as an empty one, as a missing one does.
        located = self.container.tiers.locate(self.tenant_id, conversation_id)
        if located is None:
            return []
        return [to_langchain(m) for m in located.history.messages()]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        for message in messages:
            role = _ROLES.get(message.type)
            if role is None:
                raise ValueError(f"a {message.type!r} message has no role in the service")
            tool_calls = _stored_tool_calls(message) if isinstance(message, AIMessage) else None
            tool_call_id = message.tool_call_id if isinstance(message, ToolMessage) else None
            content = message.text if not isinstance(message.content, str) else message.content
            message_id = message.id or uuid.uuid4().hex
            payload = self._check(role, content, message_id, message.name, tool_calls,
                                  tool_call_id)
            outcome = self.container.saver.save(
                NewMessage(
                    tenant_id=self.tenant_id,
                    session_id=self.session_id,
                    agent_id=self.agent_id,
                    role=role,
                    content=content,
                    message_id=message_id,
                    conversation_id=self.conversation_id,
                    name=message.name,
                    tool_calls=payload["tool_calls"],
                    tool_call_id=payload["tool_call_id"],
                )
            )
            self.conversation_id = outcome.conversation_id

    def _check(self, role: Role, content: str, message_id: str, name: str | None,
               tool_calls: list[dict[str, Any]] | None,
               tool_call_id: str | None) -> dict[str, Any]:
        """The save task's own validation (tasks.schemas): what it refuses, storage cannot
        take either (a NUL in the text, an id with a newline...), so it is refused here too.
        Returns the payload as loaded (as the task would store it)."""
        payload: dict[str, Any] = {
            "tenant_id": self.tenant_id, "session_id": self.session_id,
            "agent_id": self.agent_id, "role": role.value, "content": content,
            "message_id": message_id, "conversation_id": self.conversation_id,
            "name": name, "tool_calls": tool_calls, "tool_call_id": tool_call_id,
        }
        try:
            return dict(_save_schema(self.container.settings.max_message_chars).load(payload))
        except ValidationError as exc:
            raise ValueError(f"the service refuses this message: {exc.messages}") from None

    def clear(self) -> None:
        """Start a new conversation: the service keeps every conversation it was given."""
        self.conversation_id = uuid.uuid4().hex
