"""In-memory stand-ins for the ports, for unit tests only."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from conversation.domain.errors import ForeignConversation
from conversation.domain.messages import Conversation, Message
from conversation.domain.stats import ConversationStats, summarise_conversation
from conversation.domain.tokens import message_cost
from conversation.services.ports import MessageRecord, SessionOwner, TenantConflict


def message_record(message: Message) -> MessageRecord:
    """A message as a store's history hands it out."""
    return MessageRecord(message.id, message.role.value, message.content, message.created_at,
                         message.tokens, message.encoding, message.name, message.tool_calls,
                         message.tool_call_id)


class ListHistory:
    """A history over a list of messages, handing out records as the stores do."""

    def __init__(self, messages: list[Message], counts: dict | None = None) -> None:
        self._messages = messages
        # (encoding, message id) -> tokens: what `store_counts` kept.
        self.counts: dict[tuple[str, str], int] = {} if counts is None else counts

    def count(self) -> int:
        return len(self._messages)

    def _record(self, message: Message, encoding: str | None) -> MessageRecord:
        record = message_record(message)
        stored = self.counts.get((encoding, message.id)) if encoding else None
        if message.encoding != encoding and stored is not None:
            record.other_tokens = stored
        return record

    def first(self, encoding: str | None = None) -> MessageRecord | None:
        return self._record(self._messages[0], encoding) if self._messages else None

    def newest_chunks(self, encoding: str | None = None) -> Iterator[list[MessageRecord]]:
        newest_first = [self._record(message, encoding) for message in reversed(self._messages)]
        # Uneven chunks, as a store's doubling reads give them.
        start, size = 0, 3
        while start < len(newest_first):
            yield newest_first[start : start + size]
            start, size = start + size, size * 2

    def store_counts(self, encoding: str, counts: dict[str, int]) -> None:
        self.counts.update({(encoding, message_id): n for message_id, n in counts.items()})


@dataclass
class FakeRepository:
    conversations: dict[str, Conversation] = field(default_factory=dict)
    stored: dict[str, list[Message]] = field(default_factory=dict)
    stats: dict[str, ConversationStats] = field(default_factory=dict)
    token_counts: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    session_owners: dict[str, str] = field(default_factory=dict)
    writes: int = 0

    def store_conversation(
        self, conversation: Conversation, messages: Sequence[Message], stats: ConversationStats
    ) -> list[TenantConflict]:
        held = self.conversations.get(conversation.id)
        if held is not None and held.tenant_id != conversation.tenant_id:
            return [TenantConflict(conversation.id, conversation.tenant_id)]
        self.writes += 1
        self.conversations[conversation.id] = conversation
        self.session_owners.setdefault(conversation.session_id, conversation.tenant_id)
        existing = {m.id: m for m in self.stored.get(conversation.id, [])}
        for message in messages:
            existing.setdefault(message.id, message)
        self.stored[conversation.id] = sorted(existing.values(), key=lambda m: m.created_at)
        self.stats[conversation.id] = stats
        return []

    def store_conversations(
        self, batch: Sequence[tuple[Conversation, Sequence[Message], ConversationStats]]
    ) -> list[TenantConflict]:
        return [conflict for conversation, messages, stats in batch
                for conflict in self.store_conversation(conversation, messages, stats)]

    def store_token_counts(
        self, conversation_id: str, encoding: str, counts: dict[str, int]
    ) -> None:
        kept = self.token_counts.setdefault(conversation_id, {})
        for message_id, tokens in counts.items():
            kept.setdefault((encoding, message_id), tokens)

    def append_message(self, conversation_id: str, tenant_id: str, message: Message) -> bool:
        if self.conversations[conversation_id].tenant_id != tenant_id:
            raise ForeignConversation(f"conversation {conversation_id} is another tenant's")
        history = self.stored.setdefault(conversation_id, [])
        if any(m.id == message.id for m in history):
            return False
        history.append(message)
        history.sort(key=lambda m: m.created_at)
        self.stats[conversation_id] = summarise_conversation(history)
        return True

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    def owned_history(
        self, conversation_id: str, expected: int = 64
    ) -> tuple[str | None, ListHistory]:
        conversation = self.conversations.get(conversation_id)
        return conversation.tenant_id if conversation else None, ListHistory(
            self.stored.get(conversation_id, []), self.token_counts.setdefault(conversation_id, {})
        )

    def messages(self, conversation_id: str) -> list[Message]:
        return list(self.stored.get(conversation_id, []))

    def claim_sessions(self, claims: Sequence[tuple[str, str]]) -> dict[str, SessionOwner]:
        owners = {}
        for tenant_id, session_id in claims:
            new = session_id not in self.session_owners
            owner = self.session_owners.setdefault(session_id, tenant_id)
            owners.setdefault(session_id, SessionOwner(owner, new))
        return owners

    def stored_messages(
        self, wanted: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], str]:
        keys = set(wanted)
        return {
            (conversation.tenant_id, conversation.session_id, message.id): conversation.id
            for conversation in self.conversations.values()
            for message in self.stored.get(conversation.id, [])
            if (conversation.tenant_id, conversation.session_id, message.id) in keys
        }

    def latest_conversation_for_session(self, tenant_id: str, session_id: str) -> str | None:
        found = [
            c for c in self.conversations.values()
            if c.tenant_id == tenant_id and c.session_id == session_id
        ]
        return max(found, key=lambda c: c.created_at).id if found else None

    def has_message(self, tenant_id: str, conversation_id: str, message_id: str) -> bool:
        held = self.conversations.get(conversation_id)
        return held is not None and held.tenant_id == tenant_id and any(
            m.id == message_id for m in self.stored.get(conversation_id, []))


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
