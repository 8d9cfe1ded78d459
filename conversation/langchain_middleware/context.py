"""The context object of the service as a chat model's LangChain messages, repaired to the tool
rule of the chat APIs, and checked to end with what the model is about to answer."""
from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call

from conversation.langchain_middleware.service import ServiceFailure


def context_messages(context: dict[str, Any]) -> list[AnyMessage]:
    """The context object as the model's messages: the summary (if any) as a system message,
    then the kept messages (calls as `AIMessage.tool_calls`, results as `ToolMessage`s),
    repaired to the tool rule of the chat APIs (`_tool_rule`)."""
    messages: list[AnyMessage] = []
    if context.get("summary"):
        messages.append(SystemMessage(
            f"Summary of the earlier conversation:\n{context['summary']}"))
    return messages + _tool_rule([_message(entry) for entry in context["messages"]])


def _message(entry: dict[str, Any]) -> AnyMessage:
    """A context entry (Chat Completions' shape) as a LangChain message; calls whose arguments
    are not a JSON object become `InvalidToolCall`s, as in `conversation.langchain`."""
    name = entry.get("name") or None
    role, content = entry["role"], entry.get("content") or ""
    if role == "user":
        return HumanMessage(content, name=name)
    if role == "system":
        return SystemMessage(content, name=name)
    if role == "tool":
        return ToolMessage(content, tool_call_id=entry.get("tool_call_id") or "", name=name)
    calls, invalid = _tool_calls(entry.get("tool_calls") or [])
    return AIMessage(content, name=name, tool_calls=calls, invalid_tool_calls=invalid)


def _tool_calls(stored: list[dict[str, Any]]) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    # conversation.langchain._langchain_tool_calls, which the remote mode cannot import.
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for call in stored:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
        except (ValueError, RecursionError):  # not JSON, or nested past any sane depth
            args = None
        if isinstance(args, dict):
            calls.append(tool_call(name=function.get("name") or "", args=args, id=call.get("id")))
        else:
            invalid.append(invalid_tool_call(name=function.get("name"), id=call.get("id"),
                                             args=None if arguments is None else str(arguments),
                                             error=None))
    return calls, invalid


def _tool_rule(messages: list[AnyMessage]) -> list[AnyMessage]:
    """The messages as OpenAI (and the other chat APIs) accept them: every tool result answers
    a call of the assistant message before it (only results between them), once; every call
    is answered before the next other message. The service keeps what it was given (a tool
    that raised leaves its call unanswered, another producer may store an orphan result), and
    one such turn would otherwise make every later model call fail. So: a result that answers
    no pending call is dropped; a call left unanswered is dropped from its assistant message,
    which keeps its text (what the model said is still part of the conversation), and an
    assistant message left with neither text nor calls is dropped (an empty message says
    nothing and some APIs refuse it)."""
    kept: list[AnyMessage] = []
    pending: set[str] = set()
    owner = -1  # index in `kept` of the assistant message whose calls are pending
    answered: set[str] = set()

    def close() -> None:
        nonlocal owner
        if owner >= 0:
            message = kept[owner]
            assert isinstance(message, AIMessage)
            if pending:
                calls = [c for c in message.tool_calls if c.get("id") in answered]
                invalid = [c for c in message.invalid_tool_calls if c.get("id") in answered]
                message = message.model_copy(update={"tool_calls": calls,
                                                     "invalid_tool_calls": invalid})
                kept[owner] = message
                if not (calls or invalid or message.text.strip()):
                    del kept[owner]
        owner = -1
        pending.clear()
        answered.clear()

    for message in messages:
        if isinstance(message, ToolMessage):
            if message.tool_call_id in pending:
                pending.discard(message.tool_call_id)
                answered.add(message.tool_call_id)
                kept.append(message)
            continue  # an orphan, a second result, or a result after another message
        close()
        kept.append(message)
        if isinstance(message, AIMessage):
            ids = [c.get("id") for c in [*message.tool_calls, *message.invalid_tool_calls]]
            if ids:
                owner = len(kept) - 1
                pending.update(str(i) for i in ids if i)
    close()
    return kept


def _same(kept: BaseMessage, given: BaseMessage) -> bool:
    return (kept.type == given.type and kept.text == given.text
            and getattr(kept, "tool_call_id", None) == getattr(given, "tool_call_id", None))


def _has_blocks(message: BaseMessage) -> bool:
    """Whether the message holds more than text (LangChain's content blocks)."""
    return isinstance(message.content, list) and any(
        not isinstance(block, str) and block.get("type") != "text" for block in message.content)


def _up_to(messages: list[AnyMessage], inputs: list[BaseMessage]) -> list[AnyMessage]:
    """The context up to the messages this call answers, which must all be in it, last: a
    retried step finds the answer of the attempt that failed already stored after them, and
    must not be shown it; a context without one of them (not yet stored, or dropped by
    `_tool_rule` because what it answers is not stored) is no use to the model. The agent's
    own message object is given for an input with blocks beyond text (an image, a file): the
    service stores its text, and the model must see it whole."""
    for end in range(len(messages), len(inputs) - 1, -1):
        tail = messages[end - len(inputs): end]
        if all(_same(kept, given) for kept, given in zip(tail, inputs, strict=True)):
            return [*messages[: end - len(inputs)],
                    *(given if _has_blocks(given) else kept  # type: ignore[misc,list-item]
                      for kept, given in zip(tail, inputs, strict=True))]
    raise ServiceFailure("the context lacks the messages just saved (larger than the window?)")
