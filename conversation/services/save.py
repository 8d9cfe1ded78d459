"""Saving a message: into the active conversation in Redis, or into PostgreSQL once moved."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conversation.domain.errors import DomainError, ForeignSession
from conversation.domain.messages import (
    Conversation,
    Message,
    NewMessage,
    now_timestamp,
    parse_timestamp,
    utc_timestamp,
)
from conversation.domain.refusals import Refusal, foreign_conversation, foreign_session
from conversation.services.ports import (
    ActiveSaves,
    ActiveStoreUnavailable,
    AppendResult,
    ArchiveSaves,
    Tokenizer,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SaveOutcome:
    conversation_id: str
    message_id: str
    stored: bool  # False for a duplicate message id, or a refused message
    tier: str  # "redis" or "postgres" ("" when refused)
    refusal: Refusal | None = None  # why the message was not saved, when it was refused

    @classmethod
    def refused(cls, conversation_id: str, message_id: str, refusal: Refusal) -> SaveOutcome:
        return cls(conversation_id, message_id, False, "", refusal)


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
        self.tokenizer = tokenizer
        self.clock = clock

    def build_message(self, command: NewMessage) -> Message:
        """The stored form: timestamp normalised, tokens counted once, here."""
        model = command.metadata.get("model") if command.metadata else None
        encoding = self.tokenizer.encoding_for(model if isinstance(model, str) else None)
        created_at = (
            utc_timestamp(parse_timestamp(command.created_at))
            if command.created_at
            else self.clock()
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
        messages = [self.build_message(command) for command in commands]
        conversations = [
            Conversation(
                id=command.conversation_id or _new_id(),
                tenant_id=command.tenant_id,
                session_id=command.session_id,
                agent_id=command.agent_id,
                created_at=message.created_at,
            )
            for command, message in zip(commands, messages, strict=True)
        ]
        items = [
            (conversation, message, command.conversation_id is not None, False)
            for command, conversation, message in zip(
                commands, conversations, messages, strict=True
            )
        ]
        try:
            replies = self.active.save_many_in_session(items)
        except ActiveStoreUnavailable:
            return [self._save_direct(c, m, explicit) for c, m, explicit, _ in items]
        replies, redelivered = self._confirm_new_conversations(items, replies)
        outcomes: list[SaveOutcome] = []
        for index, (conversation, message, reply) in enumerate(
            zip(conversations, messages, replies, strict=True)
        ):
            if index in redelivered:
                outcomes.append(redelivered[index])
            elif isinstance(reply, DomainError):  # the store's refusal, as a value from here on
                outcomes.append(SaveOutcome.refused(conversation.id, message.id,
                                                    Refusal.of(reply)))
            else:
                try:
                    outcomes.append(self._settle(conversation, message, *reply))
                except DomainError as error:  # the store raised it (PostgreSQL's tenant check)
                    outcomes.append(SaveOutcome.refused(reply[1] or conversation.id, message.id,
                                                        Refusal.of(error)))
        return outcomes

    def _confirm_new_conversations(
        self,
        items: list[tuple[Conversation, Message, bool, bool]],
        replies: list[tuple[AppendResult, str] | ForeignSession],
    ) -> tuple[list[tuple[AppendResult, str] | ForeignSession], dict[int, SaveOutcome]]:
        """Messages for a session with no conversation in Redis (or new to it): the session is
        claimed in PostgreSQL, its durable owner, and refused if another tenant holds it; then
        those an earlier conversation of the session stored (a save redelivered by the
        broker, or replayed, after that conversation migrated) are duplicates; the others are
        saved in a new conversation. Only this path asks PostgreSQL; appends to an active
        conversation never do."""
        waiting = [
            i for i, reply in enumerate(replies)
            if not isinstance(reply, DomainError) and reply[0] is AppendResult.NEW_CONVERSATION
        ]
        if not waiting:
            return replies, {}
        owners = self.repository.claim_sessions(
            [(items[i][0].tenant_id, items[i][0].session_id) for i in waiting])
        redelivered: dict[int, SaveOutcome] = {}
        keys: dict[int, tuple[str, str, str]] = {}
        for i in waiting:
            conversation = items[i][0]
            owner = owners.get(conversation.session_id)
            if owner is None or owner.tenant_id != conversation.tenant_id:
                redelivered[i] = SaveOutcome.refused(
                    conversation.id, items[i][1].id, foreign_session(conversation.session_id))
            elif not owner.new:
                # A session just claimed was never used: no persisted conversation of it can
                # hold its messages, so the common case (a new session) asks PostgreSQL once.
                keys[i] = (conversation.tenant_id, conversation.session_id, items[i][1].id)
        stored = self.repository.stored_messages(list(keys.values())) if keys else {}
        redelivered.update({
            i: SaveOutcome(stored[key], key[2], False, "postgres")
            for i, key in keys.items() if key in stored
        })
        replies = list(replies)
        # An explicit conversation in a session new to Redis: _settle looks for it in
        # PostgreSQL before making it here, as for any explicit conversation Redis lacks.
        for i in waiting:
            if i not in redelivered and items[i][2]:
                replies[i] = (AppendResult.NOT_FOUND, items[i][0].id)
        confirm = [i for i in waiting if i not in redelivered and not items[i][2]]
        if confirm:
            try:
                confirmed = self.active.save_many_in_session(
                    [(items[i][0], items[i][1], False, True) for i in confirm]
                )
            except ActiveStoreUnavailable:
                # Redis went away, or refuses writes (OOM under noeviction), between the two
                # calls: these new conversations start in PostgreSQL, as during an outage.
                for i in confirm:
                    redelivered[i] = self._save_direct(items[i][0], items[i][1], items[i][2])
                return replies, redelivered
            for i, reply in zip(confirm, confirmed, strict=True):
                replies[i] = reply
        return replies, redelivered

    def _save_direct(
        self, conversation: Conversation, message: Message, explicit: bool
    ) -> SaveOutcome:
        """Redis is down: the message goes straight to PostgreSQL, same idempotency and order."""
        # An explicit conversation PostgreSQL does not know may be live in Redis, perhaps for
        # another tenant: save_direct raises ActiveStoreUnavailable rather than make one on a
        # guess (the task retries; README, "Tenants and conversation ids").
        try:
            conversation_id, stored = self.repository.save_direct(conversation, message, explicit)
        except DomainError as error:
            return SaveOutcome.refused(conversation.id, message.id, Refusal.of(error))
        return SaveOutcome(conversation_id, message.id, stored, "postgres")

    def _settle(
        self,
        conversation: Conversation,
        message: Message,
        result: AppendResult,
        conversation_id: str,
    ) -> SaveOutcome:
        """Finish what Redis alone could not: conversations that live in PostgreSQL."""
        if result is AppendResult.NOT_FOUND:
            # A conversation named by the producer may live in PostgreSQL already: look there
            # before creating it in Redis, so it is never split across the tiers.
            persisted = self.repository.get_conversation(conversation_id)
            if persisted is None:
                result, conversation_id = self.active.save_in_session(
                    conversation, message, explicit=True, create=True
                )
            elif persisted.tenant_id != conversation.tenant_id:
                result = AppendResult.FOREIGN
            else:
                result = AppendResult.MOVED
        if result is AppendResult.FOREIGN:
            return SaveOutcome.refused(conversation_id, message.id,
                                       foreign_conversation(conversation_id))
        if result is AppendResult.MOVED:
            stored = self.repository.append_message(
                conversation_id, conversation.tenant_id, message
            )
            return SaveOutcome(conversation_id, message.id, stored, "postgres")
        return SaveOutcome(conversation_id, message.id, result is AppendResult.SAVED, "redis")


def _new_id() -> str:
    return uuid.uuid4().hex
