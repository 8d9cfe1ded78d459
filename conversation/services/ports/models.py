"""The model side: counting tokens, writing summaries."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from conversation.domain.messages import Message


class Tokenizer(Protocol):
    def encoding_for(self, model: str | None) -> str: ...

    def message_cost(
        self,
        role: str,
        content: str,
        name: str | None,
        encoding: str,
        tool_calls: Sequence[dict[str, Any]] | None = None,
        tool_call_id: str | None = None,
    ) -> int: ...


class Summariser(Protocol):
    def summarise(self, previous: str | None, messages: Sequence[Message], max_tokens: int) -> str:
        """An updated summary of `previous` plus `messages`, at most `max_tokens` long."""
