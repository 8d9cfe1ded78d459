"""Fakes of the small collaborators: timers, tokenizers, locks, summaries, statistics."""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from conversation.domain.messages import Message
from conversation.domain.tokens import message_cost


@dataclass
class RecordingScheduler:
    # The shared timers: (second, countdown) for each one scheduled.
    timers: list[tuple[int, float]] = field(default_factory=list)

    def schedule_close_timer(self, second: int, countdown: float) -> None:
        self.timers.append((second, countdown))


class WordTokenizer:
    """Counts words: predictable numbers for unit tests of the services."""

    def encoding_for(self, model: str | None) -> str:
        return "words"

    def message_cost(self, role: str, content: str, name: str | None, encoding: str,
                     tool_calls: Any = None, tool_call_id: str | None = None) -> int:
        return message_cost(lambda text: len(text.split()), role, content, name, tool_calls,
                            tool_call_id)


class TwoEncodingTokenizer(WordTokenizer):
    """Words for the default encoding; for a model named "letters-*", another encoding that
    counts letters. Remembers what it was asked to count in that one."""

    def __init__(self) -> None:
        self.letter_counts: list[str] = []

    def encoding_for(self, model: str | None) -> str:
        return "letters" if model and model.startswith("letters-") else "words"

    def message_cost(self, role: str, content: str, name: str | None, encoding: str,
                     tool_calls: Any = None, tool_call_id: str | None = None) -> int:
        if encoding != "letters":
            return super().message_cost(role, content, name, encoding, tool_calls, tool_call_id)
        self.letter_counts.append(content)
        return message_cost(lambda text: len(text.replace(" ", "")), role, content, None,
                            tool_calls, tool_call_id, lambda text: 1)


@dataclass
class FakeLocks:
    """Locks held until released (no expiry: a test that needs a lapse releases it)."""

    held: dict[str, str] = field(default_factory=dict)
    _tokens: Any = field(default_factory=lambda: itertools.count(1))

    def acquire(self, name: str, seconds: int) -> str | None:
        if name in self.held:
            return None
        token = self.held[name] = f"token-{next(self._tokens)}"
        return token

    def release(self, name: str, token: str) -> None:
        if self.held.get(name) == token:
            del self.held[name]


@dataclass
class JoiningSummariser:
    """A summary that lists the contents it folded, after the previous one."""

    calls: list[tuple[str | None, list[str]]] = field(default_factory=list)

    def summarise(self, previous: str | None, messages: Sequence[Message], max_tokens: int) -> str:
        self.calls.append((previous, [m.content for m in messages]))
        return " | ".join(([previous] if previous else []) + [m.content for m in messages])


@dataclass
class RecordingSummaryRequests:
    requests: list[tuple[str, int]] = field(default_factory=list)

    def request(self, conversation_id: str, budget: int) -> None:
        self.requests.append((conversation_id, budget))


@dataclass
class FakeStatisticsStore:
    """A rollup whose changed buckets are queued by the test: each pass takes up to `per_pass`."""

    changed: int = 0
    per_pass: int = 1000
    locked: bool = False
    active: dict[tuple[str, date, str], tuple[int, int]] | None = None

    def recompute_changed(self) -> int | None:
        if self.locked:
            return None
        done = min(self.changed, self.per_pass)
        self.changed -= done
        return done

    def replace_active(self, counts: dict[tuple[str, date, str], tuple[int, int]]) -> None:
        self.active = counts


@dataclass
class CountingAnswers:
    invalidations: int = 0

    def invalidate(self) -> None:
        self.invalidations += 1


def payload(**overrides: Any) -> dict[str, Any]:
    base = {
        "tenant_id": "acme",
        "session_id": "s-1",
        "agent_id": "support",
        "role": "user",
        "content": "hello there",
    }
    base.update(overrides)
    return base


class UnreachableStore:
    """A store that is down: every call fails as the circuit breaker makes it fail."""

    def __getattr__(self, name: str) -> Any:
        from conversation.services.ports import ActiveStoreUnavailable

        def fail(*args: object, **kwargs: object) -> None:
            raise ActiveStoreUnavailable(f"{name}: down")
        return fail
