"""Saving a message: into the active conversation in Redis, or into PostgreSQL once moved (the
tiers decide which: conversation.services.tiers)."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

from conversation.domain.errors import DomainError
from conversation.domain.messages import (
    Conversation,
    Message,
    NewMessage,
    now_timestamp,
    parse_timestamp,
    utc_timestamp,
)
from conversation.domain.refusals import Refusal, foreign_session
from conversation.services.ports import ActiveSaves, AppendResult, ArchiveSaves, Tokenizer
from conversation.services.tiers import ActiveReply, Placed, SaveItem, SaveTiers, Tier

log = logging.getLogger(__name__)


class SaveOutcome(NamedTuple):
    """A named tuple, not a frozen dataclass: a bulk save makes one per message, and a
    frozen dataclass's __init__ (a setattr per field) cost several times more."""

    conversation_id: str
    message_id: str
    stored: bool  # False for a duplicate message id, or a refused message
    tier: str  # "redis" or "postgres" ("" when refused)
    refusal: Refusal | None = None  # why the message was not saved, when it was refused

    @classmethod
    def refused(cls, conversation_id: str, message_id: str, refusal: Refusal) -> SaveOutcome:
        return cls(conversation_id, message_id, False, "", refusal)

    @classmethod
    def placed(cls, placed: Placed, message_id: str) -> SaveOutcome:
        tier = placed.tier.value if placed.tier is not None else ""
        return cls(placed.conversation_id, message_id, placed.stored, tier, placed.refusal)


class MessageSaver:
    def __init__(
        self,
        active: ActiveSaves,
        repository: ArchiveSaves,
        tokenizer: Tokenizer,
        clock: Callable[[], str] = now_timestamp,
    ) -> None:
        self.active = active
        self.repository = repository
        self.tiers = SaveTiers(active, repository)
        self.tokenizer = tokenizer
        self.clock = clock

    def build_message(self, command: NewMessage, received_at: str | None = None) -> Message:
        """The stored form: timestamp normalised (without one, `received_at`, else now), tokens
        counted once, here."""
        model = command.metadata.get("model") if command.metadata else None
        encoding = self.tokenizer.encoding_for(model if isinstance(model, str) else None)
        created_at = (
            utc_timestamp(parse_timestamp(command.created_at))
            if command.created_at
            else received_at or self.clock()
        )
        return Message(
            id=command.message_id,
            role=command.role,
            content=command.content,
            created_at=created_at,
            tokens=self.tokenizer.message_cost(
                str(command.role), command.content, command.name, encoding,
                command.tool_calls, command.tool_call_id,
            ),
            encoding=encoding,
            name=command.name,
            metadata=command.metadata,
            agent_id=command.agent_id,
            tool_calls=command.tool_calls or None,
            tool_call_id=command.tool_call_id,
        )

    def save(self, command: NewMessage) -> SaveOutcome:
        """One message; a refusal is raised (its DomainError)."""
        outcome = self.save_many([command])[0]
        if outcome.refusal is not None:
            raise outcome.refusal.error()
        return outcome

    def save_many(self, commands: Sequence[NewMessage]) -> list[SaveOutcome]:
        """Save messages in order, the active ones in one round trip; each message gets its
        own outcome, a refusal in place of a bad one. Those stored are then announced to
        whoever waits for them (get_context's wait_for_message_id)."""
        outcomes = self._save_many(commands)
        self._announce(commands, outcomes)
        return outcomes

    def _announce(
        self, commands: Sequence[NewMessage], outcomes: Sequence[SaveOutcome]
    ) -> None:
        # Redis announces what it stores, in its save script (no round trip more); what went
        # to PostgreSQL is announced here.
        by_tenant: dict[str, list[str]] = {}
        for command, outcome in zip(commands, outcomes, strict=True):
            if outcome.tier == "postgres" and outcome.stored:
                by_tenant.setdefault(command.tenant_id, []).append(outcome.message_id)
        if not by_tenant:
            return
        try:
            for tenant_id, message_ids in by_tenant.items():
                self.active.announce_saved(tenant_id, message_ids)
        except Exception as exc:
            # The messages are stored: a waiter finds them on its next look (it polls between
            # waits), an announcement only wakes it sooner.
            log.debug("could not announce %d saved message(s): %s", len(outcomes), exc)

    def _save_many(self, commands: Sequence[NewMessage]) -> list[SaveOutcome]:
        # One reading of the clock for the batch (it was received at once; reading it per
        # message was 6% of a bulk save): messages without a created_at then tie, and ties
        # keep their arrival order, which is the batch's.
        received_at = self.clock()
        messages = [self.build_message(command, received_at) for command in commands]
        candidates = _new_ids(len(commands))
        items: list[SaveItem] = [
            (Conversation(
                id=command.conversation_id or candidates[i],
                tenant_id=command.tenant_id,
                session_id=command.session_id,
                agent_id=command.agent_id,
                created_at=message.created_at,
            ), message, command.conversation_id is not None, False)
            for i, (command, message) in enumerate(zip(commands, messages, strict=True))
        ]
        # Redis, or PostgreSQL while Redis is down: the tiers decide (one script call).
        replies = self._confirm_new_conversations(items, self.tiers.save_many(items))
        outcomes: list[SaveOutcome] = []
        for (conversation, message, _, _), reply in zip(items, replies, strict=True):
            if type(reply) is tuple and reply[0] in _IN_REDIS:
                # Stored (or a duplicate) in Redis: what settle would answer, without building
                # its Placed for every message of a batch.
                outcomes.append(SaveOutcome(reply[1], message.id,
                                            reply[0] is AppendResult.SAVED, _REDIS))
            elif isinstance(reply, Placed):
                outcomes.append(SaveOutcome.placed(reply, message.id))
            elif isinstance(reply, DomainError):  # the store's refusal, as a value from here on
                outcomes.append(SaveOutcome.refused(conversation.id, message.id,
                                                    Refusal.of(reply)))
            else:
                try:
                    placed = self.tiers.settle(conversation, message, *reply)
                except DomainError as error:  # the store raised it (PostgreSQL's tenant check)
                    outcomes.append(SaveOutcome.refused(reply[1] or conversation.id, message.id,
                                                        Refusal.of(error)))
                else:
                    outcomes.append(SaveOutcome.placed(placed, message.id))
        return outcomes

    def _confirm_new_conversations(
        self, items: list[SaveItem], replies: list[ActiveReply | Placed]
    ) -> list[ActiveReply | Placed]:
        """Messages for a session with no conversation in Redis (or new to it): the session is
        claimed in PostgreSQL, its durable owner, and refused if another tenant holds it; then
        those an earlier conversation of the session stored (a save redelivered by the
        broker, or replayed, after that conversation migrated) are duplicates; the others are
        saved in a new conversation. Only this path asks PostgreSQL; appends to an active
        conversation never do."""
        waiting = [
            i for i, reply in enumerate(replies)
            if isinstance(reply, tuple) and reply[0] is AppendResult.NEW_CONVERSATION
        ]
        if not waiting:
            return replies
        owners = self.repository.claim_sessions(
            [(items[i][0].tenant_id, items[i][0].session_id) for i in waiting])
        replies = list(replies)
        keys: dict[int, tuple[str, str, str]] = {}
        for i in waiting:
            conversation = items[i][0]
            owner = owners.get(conversation.session_id)
            if owner is None or owner.tenant_id != conversation.tenant_id:
                replies[i] = Placed(None, conversation.id, False,
                                    foreign_session(conversation.session_id))
            elif not owner.new:
                # A session just claimed was never used: no persisted conversation of it can
                # hold its messages, so the common case (a new session) asks PostgreSQL once.
                keys[i] = (conversation.tenant_id, conversation.session_id, items[i][1].id)
        stored = self.repository.stored_messages(list(keys.values())) if keys else {}
        for i, key in keys.items():
            if key in stored:
                replies[i] = Placed(Tier.POSTGRES, stored[key], False)
        waiting = [i for i in waiting if not isinstance(replies[i], Placed)]
        # An explicit conversation in a session new to Redis: settle looks for it in
        # PostgreSQL before making it here, as for any explicit conversation Redis lacks.
        for i in waiting:
            if items[i][2]:
                replies[i] = (AppendResult.NOT_FOUND, items[i][0].id)
        confirm = [i for i in waiting if not items[i][2]]
        if confirm:
            confirmed = self.tiers.save_many(
                [(items[i][0], items[i][1], False, True) for i in confirm])
            for i, reply in zip(confirm, confirmed, strict=True):
                replies[i] = reply
        return replies


def _new_ids(count: int) -> list[str]:
    """`count` candidate conversation ids, most never used: 128 random bits each as 32 hex
    digits, as uuid4().hex spells them (less the version bits), from one read of the
    system's random source for them all (one per message was 500 system calls a batch)."""
    digits = os.urandom(16 * count).hex()
    return [digits[i:i + 32] for i in range(0, 32 * count, 32)]


# What settle answers for a reply of these without asking anything (SaveOutcome's tier).
_IN_REDIS = (AppendResult.SAVED, AppendResult.DUPLICATE)
_REDIS = Tier.REDIS.value
