"""OpenAI's chat token accounting (CONTRACT.md): what one message and one context cost."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_PER_TOOL_CALL = 3
REPLY_PRIMING_TOKENS = 3


def message_cost(
    count: Callable[[str], int],
    role: str,
    content: str,
    name: str | None,
    tool_calls: Sequence[dict[str, Any]] | None = None,
    tool_call_id: str | None = None,
    count_repeated: Callable[[str], int] | None = None,
) -> int:
    """`3 + tokens(role) + tokens(content)`, plus `1 + tokens(name)` for a named message,
    `tokens(tool_call_id)` for a tool message and, for each tool call,
    `3 + tokens(id) + tokens(function.name) + tokens(function.arguments)`.

    `count_repeated` counts the strings that repeat from message to message (roles, names,
    function names), where a caller can cache them; `count` by default."""
    repeated = count_repeated or count
    cost = TOKENS_PER_MESSAGE + repeated(role) + count(content)
    if name:
        cost += TOKENS_PER_NAME + repeated(name)
    if tool_call_id is not None:
        cost += count(tool_call_id)
    for call in tool_calls or ():
        function = call["function"]
        cost += (TOKENS_PER_TOOL_CALL + count(call["id"]) + repeated(function["name"])
                 + count(function["arguments"]))
    return cost
