"""OpenAI's chat token accounting (CONTRACT.md): what one message and one context cost."""
from __future__ import annotations

from collections.abc import Callable

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


def message_cost(count: Callable[[str], int], role: str, content: str, name: str | None) -> int:
    """`3 + tokens(role) + tokens(content)`, plus `1 + tokens(name)` for a named message."""
    cost = TOKENS_PER_MESSAGE + count(role) + count(content)
    if name:
        cost += TOKENS_PER_NAME + count(name)
    return cost
