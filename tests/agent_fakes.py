"""A chat model that calls tools without a network, and a real tool, for create_agent tests."""
from __future__ import annotations

import re
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from pydantic import Field

ORDERS = {"4521": "shipped", "4522": "in the warehouse", "4523": "delivered"}


@tool
def lookup_order(order: str) -> str:
    """The status of an order, by its number."""
    return f"Order {order} is {ORDERS.get(order, 'unknown')}."


class ToolCallingModel(BaseChatModel):
    """Answers a question naming order numbers with one call per number, then a tool's
    results with a sentence; its answers depend only on its input (so a replayed step gets
    the same answer), and it records every input it was given."""

    model_name: str = "gpt-4"
    inputs: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingModel:  # type: ignore[override]
        return self

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        self.inputs.append(list(messages))
        last = messages[-1]
        if isinstance(last, HumanMessage):
            orders = re.findall(r"\d{4}", last.text)
            reply = AIMessage("", tool_calls=[
                {"name": "lookup_order", "args": {"order": order},
                 "id": f"call_{order}_{len(messages)}", "type": "tool_call"}
                for order in orders])
            if not orders:
                reply = AIMessage(f"You said: {last.text}")
        elif isinstance(last, ToolMessage):
            results = [m.text for m in messages if isinstance(m, ToolMessage)]
            reply = AIMessage(" ".join(results[-3:]))
        else:
            reply = AIMessage("How can I help?")
        reply.response_metadata["model_name"] = self.model_name
        return ChatResult(generations=[ChatGeneration(message=reply)])


class SameIdModel(ToolCallingModel):
    """Numbers its calls per response ("call_0", "call_1", ...), as some providers and local
    servers do: the same ids come back turn after turn."""

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        result = super()._generate(messages, stop, run_manager, **kwargs)
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        for index, call in enumerate(message.tool_calls):
            call["id"] = f"call_{index}"
        return result
