"""Context windows and the token-buffer selection, equal to LangChain's trim_messages.

The selection keeps exactly what `trim_messages(history, max_tokens=budget, strategy="last",
include_system=True, start_on="human", allow_partial=False)` keeps when its token counter
charges each message its stored cost and each list 3 more for the reply. It walks from the
newest message back and stops as soon as the budget is spent, so its cost grows with the
window, never with the history.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    newest_first: Iterable[tuple[int, bool]],
    *,
    budget: int,
    system_cost: int | None,
) -> TailSelection:
    """Walk (cost, is_human) pairs from the newest message back; stop when the budget is spent.

    `system_cost` is the cost of a leading system message (kept whatever it costs, as
    trim_messages does with include_system); it is not part of `newest_first`. trim_messages
    charges the reply priming once for the system message and once for the rest, and so do we.
    """
    remaining = budget
    if system_cost is not None:
        remaining = max(0, budget - (system_cost + REPLY_PRIMING_TOKENS))
    used = REPLY_PRIMING_TOKENS
    taken = 0
    kept = 0
    kept_cost = 0
    exhausted = True
    for cost, is_human in newest_first:
        if used + cost > remaining:
            exhausted = False
            break
        used += cost
        taken += 1
        if is_human:
            # The kept history must start on a human message (start_on="human").
            kept = taken
            kept_cost = used - REPLY_PRIMING_TOKENS
    tokens = kept_cost + REPLY_PRIMING_TOKENS + (system_cost or 0)
    return TailSelection(kept=kept, tokens=tokens, exhausted=exhausted)
