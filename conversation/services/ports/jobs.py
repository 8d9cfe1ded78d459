"""What the services hand off or coordinate through: timers, summary requests, locks, the
statistics rollup."""
from __future__ import annotations

from datetime import date
from typing import Protocol

from conversation.domain.messages import Conversation


class Scheduler(Protocol):
    def schedule_close_timer(self, second: int, countdown: float) -> None:
        """The shared timer of the sessions whose grace ends within `second` (epoch)."""


class SummaryRequests(Protocol):
    def request(self, conversation_id: str, budget: int) -> None:
        """Ask for the conversation's summary to be brought up to date, asynchronously."""


class Locks(Protocol):
    def acquire(self, name: str, seconds: int) -> str | None:
        """A token, or None while another holds the lock (it lapses after `seconds`)."""

    def release(self, name: str, token: str) -> None:
        """Release, if still held with `token`."""


class ActiveSnapshot(Protocol):
    def active_snapshot(self) -> list[tuple[Conversation, int]]:
        """Every active conversation with its message count."""


class StatisticsStore(Protocol):
    def recompute_changed(self) -> int | None:
        """Recompute the rollup buckets changed since the last pass (None: another holds it)."""

    def replace_active(self, counts: dict[tuple[str, date, str], tuple[int, int]]) -> None:
        """Replace the active snapshot: (tenant, day, agent) -> (conversations, messages)."""


class CachedAnswers(Protocol):
    def invalidate(self) -> None:
        """Answers computed from the rollup before now are stale."""
