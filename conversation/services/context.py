"""Building the context for a model window: the MemoryManager of the design."""
from __future__ import annotations

import itertools
import logging
import operator
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from conversation.domain.context import (
    SUMMARY_BUFFER,
    ContextPlan,
    TailSelection,
    message_key,
    plan_context,
    select_tail,
)
from conversation.domain.errors import ConversationNotFound
from conversation.domain.messages import Role, chat_message
from conversation.services.ports import (
    ActiveReads,
    ActiveStoreUnavailable,
    ArchiveTier,
    ArrivalListener,
    History,
    MessageRecord,
    Summary,
    SummaryRequests,
    Tokenizer,
)
from conversation.services.tiers import LocatedHistory, StoredConversation, Tiers

log = logging.getLogger(__name__)

# A short chat message costs about this many tokens: budget / this = messages to fetch at once.
TYPICAL_MESSAGE_TOKENS = 24
# wait_for_message_id (CONTRACT): at most this long for the named message to be stored.
WAIT_FOR_MESSAGE_SECONDS = 2.0
# Between two looks at the stores: woken sooner by the save's announcement (Redis pub/sub);
# without one (Redis down, an announcement lost) a back-off: ~9 looks in 2 s, not a busy loop.
FIRST_LOOK_AFTER = 0.05
LONGEST_WAIT_BETWEEN_LOOKS = 0.4
# Each of a tenant's waits may hold a worker process this long; a wait slot lapses this much
# later than its wait's deadline (when its worker died holding it).
WAIT_SLOT_MARGIN = 1.0


class WaitSlots(Protocol):
    """A tenant's waits at a time, across workers (the Redis adapter's arrivals)."""

    def take_wait_slot(self, tenant_id: str, seconds: float, cap: int) -> str | None: ...

    def give_back_wait_slot(self, tenant_id: str, token: str) -> None: ...


class ContextBuilder:
    def __init__(
        self,
        active: ActiveReads,
        repository: ArchiveTier,
        tokenizer: Tokenizer,
        windows: Mapping[str, tuple[str, int]],
        model_windows: Mapping[str, str],
        summary_requests: SummaryRequests | None = None,
        wait_seconds: float = WAIT_FOR_MESSAGE_SECONDS,
        wait_slots: WaitSlots | None = None,
        waits_per_tenant: int = 0,
    ) -> None:
        self.wait_seconds = wait_seconds
        # A read that blocks for its message holds a worker process (prefork): past
        # `waits_per_tenant` of a tenant's at a time, its reads answer without blocking
        # (WAITS_PER_TENANT). No slots, or a cap of 0: waits are not counted.
        self.wait_slots = wait_slots if waits_per_tenant > 0 else None
        self.waits_per_tenant = waits_per_tenant
        self.active = active
        self.repository = repository
        self.tokenizer = tokenizer
        self.windows = windows
        self.model_windows = model_windows
        self.summary_requests = summary_requests
        self.tiers = Tiers(active, repository)

    def get_context(
        self,
        *,
        tenant_id: str,
        conversation_id: str | None = None,
        session_id: str | None = None,
        model: str | None = None,
        window: str | None = None,
        max_tokens: int | None = None,
        wait_for_message_id: str | None = None,
    ) -> dict[str, Any]:
        """The context object of the contract; on any failure an empty one and a warning.

        With `wait_for_message_id`, the read waits (at most `wait_seconds`) until that message
        is stored, and says `"waited_for": "found"` or `"missing"` (then answering without it).
        """
        waited_for = None
        try:
            look_for = None
            context: dict[str, Any] | None = None
            if wait_for_message_id is not None:
                context, found = self._wait_for(
                    tenant_id, conversation_id, session_id, wait_for_message_id,
                    lambda: self._build(tenant_id, conversation_id, session_id, model, window,
                                        max_tokens, wait_for_message_id))
                waited_for = "missing" if context is None and found is None else "found"
                # The conversation it was found in is the one to read (no second lookup).
                conversation_id = conversation_id or found or None
                if found == "":
                    # Announced, not looked up: stored, but maybe in another conversation of
                    # the session than the one read. Until the read shows it, not found.
                    look_for, waited_for = wait_for_message_id, "missing"
            if context is None:
                context, read = self._build(tenant_id, conversation_id, session_id, model,
                                            window, max_tokens, look_for)
                if look_for is not None and (read or self.tiers.has_message(
                        tenant_id, context["conversation_id"], look_for)):
                    # Among the messages read (the common case, no round trip), or further
                    # back in the conversation (a late arrival placed by its time): one look.
                    waited_for = "found"
        except Exception as exc:  # a context failure never fails the caller (contract)
            log.warning(
                "context failed, answering an empty context: %s: %s",
                type(exc).__name__,
                exc,
                extra={"tenant_id": tenant_id, "conversation_id": conversation_id},
            )
            context = empty_context(conversation_id, model, window, max_tokens, str(exc))
        if waited_for is not None:
            context["waited_for"] = waited_for
        return context

    def _wait_for(
        self, tenant_id: str, conversation_id: str | None, session_id: str | None,
        message_id: str, read: Callable[[], tuple[dict[str, Any], bool]],
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The context, when the first read holds the message; else None and the
        conversation the message is stored in, waiting up to `wait_seconds` for it (None: not
        stored by then; "": announced, its conversation not looked up).

        The first look is the read itself (`read`, the context with whether the message is
        among the messages it read): the message a producer saved just before asking is
        usually stored by then, and that read is the answer, for no round trip more than a
        plain read's (no subscription either: a subscribe, its confirmation and the
        unsubscribe were a third of the wait's cost above a plain read, measured). Otherwise
        subscribed to the save's announcement, then a look at the stores (a save stored
        between the read and the subscription, announced unheard, is found by it), a
        blocking wait, a look again... (a back-off between looks, without Redis), and the
        caller reads once it is there."""
        deadline = time.monotonic() + self.wait_seconds
        try:
            context, held = read()
        except ConversationNotFound:
            held = False  # a session's first message: no conversation yet
        if held:
            return context, None
        # Not among the newest messages: not stored yet, or a late arrival placed back in time
        # (found by the look below).
        listener: ArrivalListener | None
        try:
            # Before the next look: a save announced after it is then never missed.
            listener = self.active.listen_for(tenant_id, message_id)
        except ActiveStoreUnavailable:
            listener = None  # Redis is down: the saves go to PostgreSQL, polled with back-off
        pause = FIRST_LOOK_AFTER
        slot: str | None = None
        try:
            may_block: bool | None = None
            while True:
                found = self._stored(tenant_id, conversation_id, session_id, message_id)
                if found is not None:
                    return None, found
                if may_block is None:
                    # Blocking holds this worker process: one of the tenant's slots, or no
                    # block at all (the look above, then the answer).
                    may_block, slot = self._take_slot(tenant_id)
                if not may_block:
                    return None, None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, None
                if listener is None:
                    time.sleep(min(left, pause))
                elif listener.wait(min(left, pause)):
                    return None, ""  # announced: the save stored it
                pause = min(pause * 2, LONGEST_WAIT_BETWEEN_LOOKS)
        finally:
            if listener is not None:
                listener.close()
            if slot is not None:
                self._give_back(tenant_id, slot)

    def _take_slot(self, tenant_id: str) -> tuple[bool, str | None]:
        """Whether this read may block for its message, and the slot to give back. Without
        Redis (or slots), it may: uncounted, as the wait then polls PostgreSQL."""
        if self.wait_slots is None:
            return True, None
        try:
            slot = self.wait_slots.take_wait_slot(
                tenant_id, self.wait_seconds + WAIT_SLOT_MARGIN, self.waits_per_tenant)
        except Exception as exc:  # counting must not cost the read
            log.debug("wait slots unavailable, waiting uncounted: %s", exc)
            return True, None
        if slot is None:
            log.info("tenant %s holds its %d waits at a time: answering without waiting",
                     tenant_id, self.waits_per_tenant, extra={"tenant_id": tenant_id})
        return slot is not None, slot

    def _give_back(self, tenant_id: str, slot: str) -> None:
        assert self.wait_slots is not None
        try:
            self.wait_slots.give_back_wait_slot(tenant_id, slot)
        except Exception as exc:  # it lapses at its deadline
            log.debug("could not give back a wait slot of %s: %s", tenant_id, exc)

    def _stored(
        self, tenant_id: str, conversation_id: str | None, session_id: str | None,
        message_id: str,
    ) -> str | None:
        """The conversation named (or the session's current one) if it holds the message."""
        try:
            target = conversation_id or self._session_conversation(tenant_id, session_id)
        except ConversationNotFound:
            return None  # a session's first message: no conversation yet
        # The tenant's only: another tenant's conversation never answers "found".
        held = self.tiers.has_message(tenant_id, target, message_id)
        return target if held else None

    def _build(
        self,
        tenant_id: str,
        conversation_id: str | None,
        session_id: str | None,
        model: str | None,
        window: str | None,
        max_tokens: int | None,
        look_for: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The context, and whether the message `look_for` was among the messages read."""
        plan = plan_context(
            model=model,
            window=window,
            max_tokens=max_tokens,
            windows=self.windows,
            model_windows=self.model_windows,
        )
        if plan.warning:
            log.warning(plan.warning)
        conversation_id = conversation_id or self._session_conversation(tenant_id, session_id)
        # Read the newest messages a typical budget holds in the first round trip.
        located = self._history(tenant_id, conversation_id, plan.budget // TYPICAL_MESSAGE_TOKENS)
        encoding = self.tokenizer.encoding_for(model)
        return self._select(conversation_id, plan, located.stored, located.history, encoding,
                            look_for)

    def _session_conversation(self, tenant_id: str, session_id: str | None) -> str:
        if session_id is None:
            raise ConversationNotFound("neither conversation_id nor session_id given")
        found = self.tiers.session_conversation(tenant_id, session_id)
        if found is None:
            raise ConversationNotFound(f"session {session_id} has no conversation")
        return found

    def _history(self, tenant_id: str, conversation_id: str, expected: int) -> LocatedHistory:
        """The tier that holds the conversation (Redis while active, then PostgreSQL) and its
        history there; in either, the owner comes in the same read as the newest messages."""
        located = self.tiers.owned_history(tenant_id, conversation_id, expected)
        if located is None:  # missing, or another tenant's: the same answer
            raise ConversationNotFound(f"conversation {conversation_id} not found")
        return located

    def _cost(self, record: MessageRecord, encoding: str, counted: dict[str, int]) -> int:
        """The record's cost in `encoding`: as counted at save time, as stored on an earlier
        read, or counted now (and noted in `counted`, to be stored once the read is done)."""
        if record.encoding == encoding:
            return record.tokens
        if record.other_tokens is not None:
            return record.other_tokens
        cost = self.tokenizer.message_cost(record.role, record.content, record.name, encoding,
                                           record.tool_calls, record.tool_call_id)
        counted[record.id] = cost
        return cost

    def _select(
        self,
        conversation_id: str,
        plan: ContextPlan,
        stored: StoredConversation,
        history: History,
        encoding: str,
        look_for: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        counted: dict[str, int] = {}
        total = history.count()
        first = history.first(encoding)
        leading_system = first if first is not None and first.role == SYSTEM else None
        system_cost = self._cost(leading_system, encoding, counted) if leading_system else None
        # The walk never reaches the leading system message: it is kept on its own terms.
        walkable = total - (1 if leading_system else 0)
        seen: list[MessageRecord] = []

        def cost_chunks() -> Iterator[list[int]]:
            left = walkable
            for chunk in history.newest_chunks(encoding):
                if len(chunk) > left:
                    chunk = chunk[:left]
                if not chunk:
                    return
                left -= len(chunk)
                seen.extend(chunk)
                if set(map(_ENCODING, chunk)) <= {encoding}:
                    yield list(map(_TOKENS, chunk))  # the common case, at C speed
                else:
                    yield [self._cost(record, encoding, counted) for record in chunk]

        selection = select_tail(cost_chunks(), lambda i: seen[i].role == USER,
                                budget=plan.budget, system_cost=system_cost)
        summary: Summary | None = None
        summary_tokens = 0
        pending = False
        if plan.strategy == SUMMARY_BUFFER and not selection.exhausted:
            # Over budget: older messages are represented by the summary, when there is one.
            summary = stored.summary()
            if summary is None:
                pending = True
            else:
                # Counted as a system message (it is sent as one), once per read.
                summary_tokens = self.tokenizer.message_cost(
                    "system", summary.text, None, encoding
                )
                selection, pending = self._select_after_summary(
                    seen, summary, plan.budget - summary_tokens, system_cost, encoding, counted
                )
            if pending and self.summary_requests is not None:
                try:
                    self.summary_requests.request(conversation_id, plan.budget)
                except Exception as exc:  # asking for a summary must not cost the context
                    log.warning("could not ask for a summary of %s: %s", conversation_id, exc)
        if counted:
            self._store_counts(history, conversation_id, encoding, counted)
        kept = list(reversed(seen[: selection.kept]))
        if leading_system is not None:
            kept.insert(0, leading_system)
        read = look_for is not None and (
            (leading_system is not None and leading_system.id == look_for)
            or any(record.id == look_for for record in seen)
        )
        return {
            "conversation_id": conversation_id,
            "model": plan.model,
            "window": plan.window,
            "strategy": plan.strategy,
            "max_tokens": plan.budget,
            "tokens": selection.tokens + summary_tokens,
            "total_messages": total,
            "truncated": len(kept) < total,
            "summary": summary.text if summary else None,
            "summary_pending": pending,
            # Inline rather than a call per message for the common case: a 32k context holds
            # a thousand of them.
            "messages": [
                {"role": r.role, "content": r.content}
                if r.name is None and r.tool_calls is None and r.tool_call_id is None
                else chat_message(r.role, r.content, r.name, r.tool_calls, r.tool_call_id)
                for r in kept
            ],
        }, read

    @staticmethod
    def _store_counts(
        history: History, conversation_id: str, encoding: str, counted: dict[str, int]
    ) -> None:
        """Counted once per encoding (the contract): what this read counted is kept for the
        next. A failure to keep it costs a recount later, never the context."""
        try:
            history.store_counts(encoding, counted)
        except Exception as exc:
            log.warning("could not store %d %s count(s) of %s: %s",
                        len(counted), encoding, conversation_id, exc)

    def _select_after_summary(
        self,
        seen: list[MessageRecord],
        summary: Summary,
        budget: int,
        system_cost: int | None,
        encoding: str,
        counted: dict[str, int],
    ) -> tuple[TailSelection, bool]:
        """The newest messages not covered by the summary, within `budget` (what the summary
        leaves). Pending when the budget ran out before reaching the covered ones: the summary
        lags."""
        # `seen` is newest first: the uncovered messages are those before the summary's last.
        uncovered = list(
            itertools.takewhile(
                lambda r: message_key(r.created_at, r.id) != summary.through, seen
            )
        )
        selection = select_tail(
            [[self._cost(r, encoding, counted) for r in uncovered]],
            lambda i: uncovered[i].role == USER,
            budget=budget,
            system_cost=system_cost,
        )
        reached_covered = selection.exhausted and len(uncovered) < len(seen)
        return selection, not reached_covered


USER = Role.USER.value
SYSTEM = Role.SYSTEM.value
_ENCODING = operator.attrgetter("encoding")
_TOKENS = operator.attrgetter("tokens")


def empty_context(
    conversation_id: str | None,
    model: str | None,
    window: str | None,
    max_tokens: int | None,
    error: str,
) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "model": model,
        "window": window,
        "strategy": None,
        "max_tokens": max_tokens,
        "tokens": 0,
        "total_messages": 0,
        "truncated": False,
        "summary": None,
        "summary_pending": False,
        "messages": [],
        "error": error,
    }
