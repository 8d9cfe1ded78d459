"""Context windows and the token-buffer selection, equal to LangChain's trim_messages.

The selection keeps exactly what `trim_messages(history, max_tokens=budget, strategy="last",
include_system=True, start_on="human", allow_partial=False)` keeps when its token counter
charges each message its stored cost and each list 3 more for the reply. It walks from the
newest message back and stops as soon as the budget is spent, so its cost grows with the
window, never with the history.
"""
from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from conversation.domain.tokens import REPLY_PRIMING_TOKENS

TOKEN_BUFFER = "token_buffer"
SUMMARY_BUFFER = "summary_buffer"
DEFAULT_WINDOW = "8k"


class UnknownWindow(ValueError):
    pass


def message_key(created_at: str, message_id: str) -> str:
    """A message's place in its conversation, as a string that sorts like the messages:
    a summary records the key of the last message it covers."""
    return f"{created_at}|{message_id}"


@dataclass(frozen=True)
class ContextPlan:
    """Which window, strategy and budget a request gets."""

    model: str | None
    window: str
    strategy: str
    budget: int
    warning: str | None = None


def plan_context(
    *,
    model: str | None,
    window: str | None,
    max_tokens: int | None,
    windows: Mapping[str, tuple[str, int]],
    model_windows: Mapping[str, str],
) -> ContextPlan:
    """Pick the window from `window`, else from the model (longest known prefix), else 8k."""
    warning = None
    if window is None:
        window = _window_for_model(model, model_windows)
        if window is None:
            warning = f"unknown model {model!r}: using the {DEFAULT_WINDOW} window"
            window = DEFAULT_WINDOW
    if window not in windows:
        raise UnknownWindow(f"unknown window {window!r}; known: {sorted(windows)}")
    strategy, budget = windows[window]
    if max_tokens is not None:
        budget = max_tokens
    return ContextPlan(model=model, window=window, strategy=strategy, budget=budget, warning=warning)


def _window_for_model(model: str | None, model_windows: Mapping[str, str]) -> str | None:
    if not model:
        return None
    name = model.lower()
    best = None
    for prefix in model_windows:
        if name.startswith(prefix.lower()) and (best is None or len(prefix) > len(best)):
            best = prefix
    return model_windows[best] if best is not None else None


@dataclass(frozen=True)
class TailSelection:
    """How many of the newest messages to keep, and what they cost."""

    kept: int
    tokens: int
    exhausted: bool  # True when the walk reached the start of the history


def select_tail(
    cost_chunks: Iterable[Sequence[int]],
    is_human: Callable[[int], bool],
    *,
    budget: int,
    system_cost: int | None,
) -> TailSelection:
    """Walk the messages' costs from the newest back, a chunk at a time (the `i`-th newest
    message is human when `is_human(i)`); stop when the budget is spent.

    `system_cost` is the cost of a leading system message (kept whatever it costs, as
    trim_messages does with include_system); it is not part of the walk. trim_messages
    charges the reply priming once for the system message and once for the rest, and so do we.
    """
    remaining = budget
    if system_cost is not None:
        remaining = max(0, budget - (system_cost + REPLY_PRIMING_TOKENS))
    # spent[k]: the reply priming plus the costs of the k newest messages.
    spent = [REPLY_PRIMING_TOKENS]
    exhausted = True
    for costs in cost_chunks:
        sums = list(itertools.accumulate(costs, initial=spent[-1]))
        # Costs are positive, so the sums rise: those within the budget are a prefix, found by
        # bisection rather than a Python step per message.
        fitting = bisect.bisect_right(sums, remaining, lo=1) - 1
        spent.extend(sums[1 : fitting + 1])
        if fitting < len(costs):
            exhausted = False
            break
    # The kept history must start on a human message (start_on="human").
    kept = len(spent) - 1
    while kept and not is_human(kept - 1):
        kept -= 1
    return TailSelection(kept=kept, tokens=spent[kept] + (system_cost or 0), exhausted=exhausted)
