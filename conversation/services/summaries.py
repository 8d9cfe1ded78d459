"""The summary buffer's summaries: built off the request path, incrementally, one worker at a
time per conversation, in whichever tier holds the conversation."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from conversation.domain.context import message_key, select_tail
from conversation.domain.messages import Message, Role
from conversation.services.ports import (
    ActiveTier,
    ArchiveTier,
    Locks,
    Summariser,
    Summary,
    Tokenizer,
)
from conversation.services.tiers import Tiers

log = logging.getLogger(__name__)

# The share of the budget a summary may take; the rest is for the newest messages verbatim.
SUMMARY_SHARE = 0.1
LOCK_SECONDS = 300


def summary_allowance(budget: int) -> int:
    return max(64, int(budget * SUMMARY_SHARE))


class SummaryStatus(Enum):
    UPDATED = "updated"
    UP_TO_DATE = "up_to_date"
    BUSY = "busy"  # another worker holds the conversation's summary lock
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class SummaryOutcome:
    status: SummaryStatus
    folded: int = 0


class SummaryBuilder:
    def __init__(
        self,
        active: ActiveTier,
        repository: ArchiveTier,
        tokenizer: Tokenizer,
        summariser: Summariser,
        locks: Locks,
    ) -> None:
        self.active = active
        self.repository = repository
        self.tokenizer = tokenizer
        self.summariser = summariser
        self.locks = locks
        self.tiers = Tiers(active, repository)

    def refresh(self, conversation_id: str, budget: int) -> SummaryOutcome:
        """Fold every message older than the verbatim tail and not yet covered into the summary.

        The tail is what fits the budget less the summary's allowance, so summary + tail fit
        the budget. Only messages after the summary's last covered one are read into the
        model: the summary grows incrementally.
        """
        lock = f"summary:{conversation_id}"
        token = self.locks.acquire(lock, LOCK_SECONDS)
        if token is None:
            return SummaryOutcome(SummaryStatus.BUSY)
        try:
            return self._refresh(conversation_id, budget)
        finally:
            self.locks.release(lock, token)

    def _refresh(self, conversation_id: str, budget: int) -> SummaryOutcome:
        # The service asked for this summary itself (the context read that found it lacking):
        # no tenant to check.
        located = self.tiers.find(conversation_id)
        if located is None:
            return SummaryOutcome(SummaryStatus.NOT_FOUND)
        stored = located.history
        messages = stored.messages()
        leading_system = messages[0] if messages and messages[0].role is Role.SYSTEM else None
        rest = messages[1:] if leading_system else messages
        allowance = summary_allowance(budget)
        newest_first = rest[::-1]
        tail = select_tail(
            [[m.tokens for m in newest_first]],
            lambda i: newest_first[i].role is Role.USER,
            budget=budget - allowance,
            system_cost=leading_system.tokens if leading_system else None,
        )
        older = rest[: len(rest) - tail.kept]
        current = stored.summary()
        to_fold = older[_covered_count(older, current.through) if current else 0 :]
        if not to_fold:
            return SummaryOutcome(SummaryStatus.UP_TO_DATE)
        text = self.summariser.summarise(
            current.text if current else None, to_fold, max_tokens=allowance
        )
        last: Message = to_fold[-1]
        summary = Summary(text, message_key(last.created_at, last.id))
        if not stored.save_summary(summary):
            # It moved to PostgreSQL while we worked: the next request builds it there.
            return SummaryOutcome(SummaryStatus.NOT_FOUND)
        log.info("summary of %s now covers %d more message(s)", conversation_id, len(to_fold))
        return SummaryOutcome(SummaryStatus.UPDATED, folded=len(to_fold))


def _covered_count(messages: list[Message], through: str) -> int:
    """How many of `messages` (oldest first) the summary covers: up to its last message.

    Found by the message's key, compared for equality only: the list's order is the truth,
    and two messages of one instant may sort either way by key.
    """
    for index in range(len(messages) - 1, -1, -1):
        if message_key(messages[index].created_at, messages[index].id) == through:
            return index + 1
    return 0
