"""The two tiers: a conversation lives in Redis while active, in PostgreSQL once migrated.

This is the only place that decides which tier answers for a conversation, or takes a message,
and that falls back to PostgreSQL when Redis is down (ActiveStoreUnavailable: the adapter
failed, or the circuit breaker is open). Every read of one conversation (the context, the full
conversation, the LangChain history, the summaries) goes through `Tiers`; the tenant is
checked here too, so a conversation of another tenant answers exactly like a missing one,
whatever the caller. Every save goes through `SaveTiers`, the write side, on the save path's
own roles (ActiveSaves, ArchiveSaves).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from conversation.domain.errors import DomainError, ForeignSession
from conversation.domain.messages import Conversation, Message
from conversation.domain.refusals import Refusal, foreign_conversation
from conversation.services.ports import (  # the tiers' ports live with the others
    ActiveSaves,
    ActiveStoreUnavailable,
    ActiveTier,
    AppendResult,
    ArchiveSaves,
    ArchiveTier,
    History,
    Summary,
    TierStore,
)

log = logging.getLogger(__name__)


class Tier(StrEnum):
    REDIS = "redis"
    POSTGRES = "postgres"


@dataclass(frozen=True)
class StoredConversation:
    """One conversation's data in the tier that holds it (bound to its id)."""

    store: TierStore
    conversation_id: str

    def messages(self) -> list[Message]:
        return self.store.messages(self.conversation_id)

    def summary(self) -> Summary | None:
        return self.store.summary(self.conversation_id)

    def save_summary(self, summary: Summary) -> bool:
        """False when the conversation left this tier meanwhile (migrated)."""
        return self.store.save_summary(self.conversation_id, summary)


@dataclass(frozen=True)
class Located:
    tier: Tier
    conversation: Conversation
    history: StoredConversation


@dataclass(frozen=True)
class LocatedHistory:
    """A context read's view: the newest messages already read with the owner (one round
    trip), the rest on demand; `stored` for the summary."""

    tier: Tier
    history: History
    stored: StoredConversation


class Tiers:
    def __init__(self, active: ActiveTier, archive: ArchiveTier) -> None:
        self.active = active
        self.archive = archive

    def locate(self, tenant_id: str, conversation_id: str) -> Located | None:
        """The tenant's conversation where it lives, or None (missing, or another tenant's).

        Raises ActiveStoreUnavailable for one PostgreSQL lacks while Redis is down: it may be
        live there, so neither "not found" nor its messages can be told."""
        located = self.find(conversation_id)
        if located is None or located.conversation.tenant_id != tenant_id:
            return None
        return located

    def find(self, conversation_id: str) -> Located | None:
        """`locate` without the tenant check: for the service's own work (a summary task names a
        conversation the service chose) and for callers that check it themselves (an admin
        key may read any tenant's)."""
        unavailable: ActiveStoreUnavailable | None = None
        try:
            conversation = self.active.get_conversation(conversation_id)
        except ActiveStoreUnavailable as error:
            conversation, unavailable = None, error  # Redis is down: what PostgreSQL holds
        if conversation is not None:
            return Located(Tier.REDIS, conversation,
                           StoredConversation(self.active, conversation_id))
        conversation = self.archive.get_conversation(conversation_id)
        if conversation is None:
            if unavailable is not None:
                raise unavailable
            return None
        return Located(Tier.POSTGRES, conversation,
                       StoredConversation(self.archive, conversation_id))

    def owned_history(
        self, tenant_id: str, conversation_id: str, expected: int
    ) -> LocatedHistory | None:
        """The tenant's conversation's history for a context read, or None: the owner comes in
        the same read as the `expected` newest messages (one round trip on the hot path)."""
        owner: str | None = None
        try:
            owner, history = self.active.owned_history(conversation_id, expected=expected)
            store: TierStore = self.active
            tier = Tier.REDIS
        except ActiveStoreUnavailable:
            owner = None  # Redis is down: serve what PostgreSQL has
        if owner is None:
            owner, history = self.archive.owned_history(conversation_id, expected)
            store, tier = self.archive, Tier.POSTGRES
        if owner is not None and owner != tenant_id:
            # The caller hears what it would for an id that does not exist (the answer must not
            # tell a tenant that another one uses the id); the operator's log says more.
            log.info("conversation %s is another tenant's", conversation_id,
                     extra={"tenant_id": tenant_id, "conversation_id": conversation_id})
            return None
        if owner is None:
            return None
        return LocatedHistory(tier, history, StoredConversation(store, conversation_id))

    def session_conversation(self, tenant_id: str, session_id: str) -> str | None:
        """The session's current conversation: Redis's, else its latest in PostgreSQL."""
        try:
            found = self.active.session_conversation(tenant_id, session_id)
        except ActiveStoreUnavailable:
            found = None  # Redis is down: the session's conversation in PostgreSQL, if any
        return found or self.archive.latest_conversation_for_session(tenant_id, session_id)

    def has_message(self, tenant_id: str, conversation_id: str, message_id: str) -> bool:
        """Whether the tenant's conversation holds the message, in either tier (another
        tenant's conversation never does)."""
        try:
            held = self.active.has_message(tenant_id, conversation_id, message_id)
        except ActiveStoreUnavailable:
            held = None
        if held is None:
            held = self.archive.has_message(tenant_id, conversation_id, message_id)
        return held

    # --- the active tier's lists (the read side's active part) ---------------------------

    def active_conversations(self, tenant_id: str) -> list[Conversation]:
        """The tenant's conversations in Redis; none while Redis is down (PostgreSQL's answer
        then stands alone)."""
        try:
            return self.active.active_conversations(tenant_id)
        except ActiveStoreUnavailable:
            return []

    def active_messages(self, conversation_id: str) -> list[Message]:
        """An active conversation's messages (raises ActiveStoreUnavailable)."""
        return self.active.messages(conversation_id)

    def active_message_count(self, conversation_id: str) -> int:
        return self.active.message_count(conversation_id)


# --- the write side: saves ----------------------------------------------------------------

# A message to save: (conversation, message, explicit, create), as ActiveSaves takes them.
SaveItem = tuple[Conversation, Message, bool, bool]
# Redis's answer for one: the result and the conversation id used, or the session's refusal.
ActiveReply = tuple[AppendResult, str] | ForeignSession


@dataclass(frozen=True)
class Placed:
    """Where a save left its message: the tier and conversation, and whether it was stored
    there (False: a duplicate id); or why it was refused (`tier` None)."""

    tier: Tier | None
    conversation_id: str
    stored: bool
    refusal: Refusal | None = None


class SaveTiers:
    """Which tier takes a message: Redis, or PostgreSQL once its conversation moved there or
    while Redis is down. A class of its own beside `Tiers`: a save needs the save path's
    roles of each store, not the reads'."""

    def __init__(self, active: ActiveSaves, archive: ArchiveSaves) -> None:
        self.active = active
        self.archive = archive

    def save_many(self, items: Sequence[SaveItem]) -> list[ActiveReply | Placed]:
        """Redis's replies for the items, in one script call (no round trip more than Redis's
        own); while Redis is down, or refuses writes, each item saved straight into
        PostgreSQL, same idempotency and order (`Placed`). A reply still to finish goes
        through `settle`."""
        try:
            return list(self.active.save_many_in_session(items))
        except ActiveStoreUnavailable:
            return [self._save_direct(conversation, message, explicit)
                    for conversation, message, explicit, _ in items]

    def _save_direct(self, conversation: Conversation, message: Message,
                     explicit: bool) -> Placed:
        # An explicit conversation PostgreSQL does not know may be live in Redis, perhaps for
        # another tenant: save_direct raises ActiveStoreUnavailable rather than make one on a
        # guess (the task retries; README, "Tenants and conversation ids").
        try:
            conversation_id, stored = self.archive.save_direct(conversation, message, explicit)
        except DomainError as error:
            return Placed(None, conversation.id, False, Refusal.of(error))
        return Placed(Tier.POSTGRES, conversation_id, stored)

    def settle(self, conversation: Conversation, message: Message, result: AppendResult,
               conversation_id: str) -> Placed:
        """Finish a save Redis answered: a conversation that moved to PostgreSQL takes the
        message there; one the producer named and Redis lacks is looked for in PostgreSQL
        before it is made in Redis, so a conversation is never split across the tiers.
        Raises what PostgreSQL's tenant check raises (DomainError)."""
        if result is AppendResult.NOT_FOUND:
            persisted = self.archive.get_conversation(conversation_id)
            if persisted is None:
                result, conversation_id = self.active.save_in_session(
                    conversation, message, explicit=True, create=True
                )
            elif persisted.tenant_id != conversation.tenant_id:
                result = AppendResult.FOREIGN
            else:
                result = AppendResult.MOVED
        if result is AppendResult.FOREIGN:
            return Placed(None, conversation_id, False, foreign_conversation(conversation_id))
        if result is AppendResult.MOVED:
            stored = self.archive.append_message(conversation_id, conversation.tenant_id,
                                                 message)
            return Placed(Tier.POSTGRES, conversation_id, stored)
        return Placed(Tier.REDIS, conversation_id, result is AppendResult.SAVED)
