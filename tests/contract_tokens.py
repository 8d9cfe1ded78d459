"""The contract's token counter over LangChain messages, for comparing with trim_messages."""
from __future__ import annotations

import json

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from conversation.adapters.tokenizer import TiktokenCounter

COUNTER = TiktokenCounter()
ENCODING = COUNTER.default_encoding
ROLE_OF = {HumanMessage: "user", AIMessage: "assistant", SystemMessage: "system",
           ToolMessage: "tool"}


def lc_cost(message: BaseMessage) -> int:
    """The contract's count, read off the LangChain message itself: tokens(function.arguments)
    of the arguments as stored, the raw calls the history keeps in
    `additional_kwargs["tool_calls"]` (as LangChain's OpenAI integration does). Only without
    them are `args` written back as JSON text (as convert_to_openai_messages does)."""
    role = ROLE_OF[type(message)]
    calls = message.additional_kwargs.get("tool_calls") or [
        {"id": c["id"], "type": "function",
         "function": {"name": c["name"], "arguments": json.dumps(c["args"], ensure_ascii=False)}}
        for c in getattr(message, "tool_calls", None) or []
    ]
    return COUNTER.message_cost(role, str(message.content), message.name, ENCODING, calls,
                                getattr(message, "tool_call_id", None))


def lc_counter(messages: list[BaseMessage]) -> int:
    # OpenAI's accounting: each message, plus 3 for the reply.
    return sum(lc_cost(m) for m in messages) + 3
