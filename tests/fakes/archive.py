"""In-memory archive (PostgreSQL): one fake per role port, all over one `ArchiveMemory`, as
the PostgreSQL adapter's parts share one database. Each can be built alone; FakeRepository
plays every role (services.ports.Repository).

What the services rely on, kept: a conversation id belongs to one tenant (never merged into
for another); a message id is stored once per conversation; messages in created_at order, then
arrival; a session has one durable owner; writes are idempotent."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from conversation.domain.errors import ForeignConversation, ForeignSession
from conversation.domain.messages import (
    Conversation,
    ConversationStatus,
    Message,
    parse_timestamp,
)
from conversation.domain.stats import ConversationStats, summarise_conversation
from conversation.services.ports import (
    ActiveStoreUnavailable,
    SessionOwner,
    Summary,
    TenantConflict,
)
from tests.fakes.history import ListHistory


@dataclass
class ArchiveMemory:
    conversations: dict[str, Conversation] = field(default_factory=dict)
    stored: dict[str, list[Message]] = field(default_factory=dict)
    stats: dict[str, ConversationStats] = field(default_factory=dict)
    token_counts: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    session_owners: dict[str, str] = field(default_factory=dict)
    # Conversations save_direct made during an outage, never migrated (PostgreSQL:
    # migrated_at null); open while their status is active.
    direct: set[str] = field(default_factory=set)
    # Dead letters' items, as their payloads name them: tenant_id, conversation_id, session_id.
    dead_letters: list[dict[str, str]] = field(default_factory=list)
    retention_days: dict[str, int] = field(default_factory=dict)
    writes: int = 0  # transactions store_conversation(s) committed

    def _insert(self, conversation_id: str, message: Message) -> bool:
        """After the last message of its instant or earlier: created_at order, then arrival."""
        history = self.stored.setdefault(conversation_id, [])
        if any(m.id == message.id for m in history):
            return False
        at = sum(1 for m in history if m.created_at <= message.created_at)
        history.insert(at, message)
        return True

    def _open_direct(self, tenant_id: str, session_id: str) -> list[Conversation]:
        return [self.conversations[c] for c in sorted(self.direct)
                if (self.conversations[c].tenant_id, self.conversations[c].session_id)
                == (tenant_id, session_id)
                and self.conversations[c].status is ConversationStatus.ACTIVE]


def _same_lifetime(direct: Conversation, owner: Conversation) -> bool:
    """Whether a conversation saved during an outage belongs with the migrated `owner`:
    begun after it, or not closed before it (as the PostgreSQL adapter's rule)."""
    if parse_timestamp(direct.created_at) >= parse_timestamp(owner.created_at):
        return True
    return direct.closed_at is None or (
        owner.closed_at is not None
        and parse_timestamp(direct.closed_at) >= parse_timestamp(owner.closed_at))


class FakeArchiveTier(ArchiveMemory):
    """services.ports.ArchiveTier."""

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

    def summary(self, conversation_id: str) -> Summary | None:
        conversation = self.conversations.get(conversation_id)
        if conversation is None or conversation.summary is None:
            return None
        return Summary(conversation.summary, conversation.summary_through or "")

    def save_summary(self, conversation_id: str, summary: Summary) -> bool:
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            return False
        self.conversations[conversation_id] = replace(
            conversation, summary=summary.text, summary_through=summary.through)
        return True


class FakeArchiveWrites(ArchiveMemory):
    """services.ports.ArchiveWrites."""

    def store_conversation(
        self, conversation: Conversation, messages: Sequence[Message], stats: ConversationStats
    ) -> list[TenantConflict]:
        return self.store_conversations([(conversation, messages, stats)])

    def store_conversations(
        self, batch: Sequence[tuple[Conversation, Sequence[Message], ConversationStats]]
    ) -> list[TenantConflict]:
        conflicts = []
        for conversation, messages, stats in batch:
            held = self.conversations.get(conversation.id)
            if held is not None and held.tenant_id != conversation.tenant_id:
                conflicts.append(TenantConflict(conversation.id, conversation.tenant_id))
                continue
            self.conversations[conversation.id] = conversation
            self.direct.discard(conversation.id)
            self.session_owners.setdefault(conversation.session_id, conversation.tenant_id)
            for message in messages:
                self._insert(conversation.id, message)
            self.stats[conversation.id] = stats
            self._absorb(conversation)
        self.writes += 1
        return conflicts

    def _absorb(self, owner: Conversation) -> None:
        """What the session saved here while the active tier was down belongs to the
        conversation it had there: migrated, that one takes it over (an outage does not split
        a conversation)."""
        for conversation_id in sorted(self.direct):
            direct = self.conversations[conversation_id]
            if ((direct.tenant_id, direct.session_id) != (owner.tenant_id, owner.session_id)
                    or not _same_lifetime(direct, owner)):
                continue
            for message in self.stored.pop(conversation_id, []):
                self._insert(owner.id, message)
            self.direct.discard(conversation_id)
            del self.conversations[conversation_id]
            self.stats.pop(conversation_id, None)
            self.stats[owner.id] = summarise_conversation(self.stored[owner.id], owner.closed_at)

    def store_token_counts(
        self, conversation_id: str, encoding: str, counts: Mapping[str, int]
    ) -> None:
        kept = self.token_counts.setdefault(conversation_id, {})
        for message_id, tokens in counts.items():
            kept.setdefault((encoding, message_id), tokens)


class FakeArchiveSaves(ArchiveMemory):
    """services.ports.ArchiveSaves: a message for a moved conversation, the sessions' owners,
    and saves straight into the archive while the active tier is down."""

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    def append_message(self, conversation_id: str, tenant_id: str, message: Message) -> bool:
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            raise LookupError(f"conversation {conversation_id} is not persisted")
        if conversation.tenant_id != tenant_id:
            raise ForeignConversation(f"conversation {conversation_id} is another tenant's")
        if not self._insert(conversation_id, message):
            return False
        self.stats[conversation_id] = summarise_conversation(self.stored[conversation_id])
        return True

    def claim_sessions(self, claims: Sequence[tuple[str, str]]) -> dict[str, SessionOwner]:
        owners: dict[str, SessionOwner] = {}
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

    def save_direct(
        self, conversation: Conversation, message: Message, explicit: bool
    ) -> tuple[str, bool]:
        owner = self.claim_sessions([(conversation.tenant_id, conversation.session_id)])
        if owner[conversation.session_id].tenant_id != conversation.tenant_id:
            raise ForeignSession(f"session {conversation.session_id} belongs to another tenant")
        key = (conversation.tenant_id, conversation.session_id, message.id)
        previous = self.stored_messages([key])
        if previous:
            return previous[key], False
        target: str | None
        if explicit:
            held = self.conversations.get(conversation.id)
            if held is None:  # it may be live in the active tier: not decidable now
                raise ActiveStoreUnavailable(f"conversation {conversation.id} is not archived")
            if held.tenant_id != conversation.tenant_id:
                raise ForeignConversation(f"conversation {conversation.id} is another tenant's")
            target = conversation.id
        else:
            open_ones = self._open_direct(conversation.tenant_id, conversation.session_id)
            target = max(open_ones, key=lambda c: c.created_at).id if open_ones else None
        if target is None:
            target = conversation.id
            self.conversations[target] = replace(conversation, created_at=message.created_at,
                                                 status=ConversationStatus.ACTIVE)
            self.direct.add(target)
        return target, self._insert(target, message)


class FakeOutageCloses(ArchiveMemory):
    """services.ports.OutageCloses."""

    def close_active(self, tenant_id: str, session_id: str, closed_at: str) -> list[str]:
        closed = [c.id for c in self._open_direct(tenant_id, session_id)]
        for conversation_id in closed:
            self.conversations[conversation_id] = replace(
                self.conversations[conversation_id], status=ConversationStatus.CLOSED,
                closed_at=closed_at)
            self.stats[conversation_id] = summarise_conversation(
                self.stored.get(conversation_id, []), closed_at)
        return closed


class FakeArchiveErasure(ArchiveMemory):
    """services.ports.ArchiveErasure."""

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    def erase_conversation(self, conversation_id: str) -> bool:
        existed = self.conversations.pop(conversation_id, None) is not None
        for table in (self.stored, self.stats, self.token_counts):
            table.pop(conversation_id, None)
        self.direct.discard(conversation_id)
        return existed

    def erase_tenant(self, tenant_id: str) -> dict[str, int]:
        ids = self.conversation_ids(tenant_id)
        for conversation_id in ids:
            self.erase_conversation(conversation_id)
        letters = self.erase_dead_letters(tenant_id)
        self.retention_days.pop(tenant_id, None)
        self.session_owners = {s: t for s, t in self.session_owners.items() if t != tenant_id}
        return {"conversations": len(ids), "dead_letters": letters, "api_keys": 0}

    def erase_dead_letters(
        self, tenant_id: str, conversation_id: str | None = None, session_id: str | None = None
    ) -> int:
        def erased(item: dict[str, str]) -> bool:
            if conversation_id is None:
                return item.get("tenant_id") == tenant_id
            if item.get("conversation_id") == conversation_id:
                return item.get("tenant_id") in (None, tenant_id)
            return (item.get("tenant_id") == tenant_id and item.get("session_id") == session_id
                    and "conversation_id" not in item)

        kept = [item for item in self.dead_letters if not erased(item)]
        removed = len(self.dead_letters) - len(kept)
        self.dead_letters = kept
        return removed

    def conversation_ids(self, tenant_id: str) -> list[str]:
        return sorted(c.id for c in self.conversations.values() if c.tenant_id == tenant_id)

    def set_retention(self, tenant_id: str, days: int | None) -> None:
        self.retention_days.pop(tenant_id, None)
        if days is not None:
            self.retention_days[tenant_id] = days

    def retention(self) -> dict[str, int]:
        return dict(self.retention_days)

    def expired_conversations(self, tenant_id: str, before: datetime, limit: int) -> list[str]:
        def last(conversation: Conversation) -> datetime:
            history = self.stored.get(conversation.id)
            return parse_timestamp(history[-1].created_at if history else conversation.created_at)

        return sorted(c.id for c in self.conversations.values()
                      if c.tenant_id == tenant_id and last(c) < before)[:limit]


@dataclass
class FakeRepository(FakeArchiveTier, FakeArchiveWrites, FakeArchiveSaves, FakeOutageCloses,
                     FakeArchiveErasure):
    """The whole archive (services.ports.Repository): every role over one memory."""
