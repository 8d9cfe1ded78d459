"""In-memory active tier (Redis): one fake per role port, all over one `ActiveMemory`, as the
Redis adapter's parts share one Redis. Each can be built alone; FakeActiveStore plays every
role (services.ports.ActiveStore).

What the services rely on, kept: a session belongs to the tenant that first used it, and
holds one conversation at a time; a close bumps its generation, a reopen (or a message
written after the close) bumps it again; a message id is stored once per conversation; messages
in created_at order, then arrival; a conversation migrated leaves a marker, so a save to it
answers MOVED (FOREIGN for another tenant); a close timer armed stays armed until taken.
Not kept: expiry (buckets, markers and released sessions stay until removed)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from conversation.domain.errors import ForeignSession
from conversation.domain.messages import Conversation, Message, parse_timestamp
from conversation.services.ports import (
    AppendResult,
    ClosedSession,
    ConversationRefused,
    MigrationLoad,
    SessionState,
    Summary,
)
from tests.fakes.history import ListHistory


@dataclass
class SessionRecord:
    tenant_id: str
    generation: int = 0
    conversation_id: str | None = None
    closed_at: str | None = None


class FakeListener:
    """One waiter: woken by the announcement of its message (after it subscribed)."""

    def __init__(self, waiters: list[FakeListener]) -> None:
        self._announced = threading.Event()
        self._waiters = waiters

    def announce(self) -> None:
        self._announced.set()

    def wait(self, seconds: float) -> bool:
        return self._announced.wait(max(0.0, seconds))

    def close(self) -> None:
        if self in self._waiters:
            self._waiters.remove(self)


@dataclass
class ActiveMemory:
    # The time of a save (idle sweeps) and of a ready mark (the lead's order): epoch seconds.
    clock: Callable[[], float] = time.time
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    stored: dict[str, list[Message]] = field(default_factory=dict)
    summaries: dict[str, Summary] = field(default_factory=dict)
    token_counts: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    migrated: dict[str, str] = field(default_factory=dict)  # conversation -> tenant (marker)
    active_sessions: set[str] = field(default_factory=set)
    closed: dict[str, float] = field(default_factory=dict)  # session -> closed epoch
    buckets: dict[int, set[str]] = field(default_factory=dict)
    armed: set[int] = field(default_factory=set)
    ready: dict[tuple[str, int], float] = field(default_factory=dict)
    activity: dict[str, float] = field(default_factory=dict)
    quarantine_reasons: dict[str, str] = field(default_factory=dict)
    waiters: dict[tuple[str, str], list[FakeListener]] = field(default_factory=dict)
    # Conversations whose data does not decode (what load_for_migration refuses).
    undecodable: set[str] = field(default_factory=set)

    def _announce(self, tenant_id: str, message_id: str) -> None:
        for listener in list(self.waiters.get((tenant_id, message_id), [])):
            listener.announce()

    def _state(self, record: SessionRecord | None) -> SessionState | None:
        if record is None:
            return None
        return SessionState(record.tenant_id, record.conversation_id, record.generation,
                            record.closed_at)


def _oldest(scores: Mapping[str, float], limit: int, at_most: float | None = None) -> list[str]:
    """A sorted set's range: by score, then member; `at_most` the highest score."""
    members = sorted((score, member) for member, score in scores.items()
                     if at_most is None or score <= at_most)
    return [member for _, member in members[:limit]]


class FakeActiveSaves(ActiveMemory):
    """services.ports.ActiveSaves."""

    def save_in_session(
        self, conversation: Conversation, message: Message, *, explicit: bool,
        create: bool = False,
    ) -> tuple[AppendResult, str]:
        result = self.save_many_in_session([(conversation, message, explicit, create)])[0]
        if isinstance(result, ForeignSession):
            raise result
        return result

    def save_many_in_session(
        self, items: Sequence[tuple[Conversation, Message, bool, bool]]
    ) -> list[tuple[AppendResult, str] | ForeignSession]:
        return [self._save(*item) for item in items]

    def _save(
        self, conversation: Conversation, message: Message, explicit: bool, create: bool
    ) -> tuple[AppendResult, str] | ForeignSession:
        tenant_id, session_id = conversation.tenant_id, conversation.session_id
        session = self.sessions.get(session_id)
        if session is not None and session.tenant_id != tenant_id:
            return ForeignSession(f"session {session_id} belongs to another tenant")
        # A session new here, or (without an explicit id) one with no conversation: the
        # caller confirms a new conversation first (create), nothing is written till then.
        if not create and (session is None or (session.conversation_id is None and not explicit)):
            return AppendResult.NEW_CONVERSATION, ""
        if session is None:
            session = self.sessions[session_id] = SessionRecord(tenant_id)
        if session.conversation_id is None and not explicit:
            session.conversation_id = conversation.id
        if session.closed_at is not None and message.created_at > session.closed_at:
            session.closed_at = None  # a message after the close: a reconnect
            session.generation += 1
        conversation_id = conversation.id if explicit else session.conversation_id
        assert conversation_id is not None
        result = self._append(replace(conversation, id=conversation_id), message,
                              create=create or not explicit)
        if result in (AppendResult.SAVED, AppendResult.DUPLICATE):
            if explicit and session.conversation_id is None:
                session.conversation_id = conversation_id
            self.active_sessions.add(session_id)
            if result is AppendResult.SAVED:
                self.activity[conversation_id] = self.clock()
        return result, conversation_id

    def _append(self, conversation: Conversation, message: Message, create: bool) -> AppendResult:
        held = self.conversations.get(conversation.id)
        if held is None:
            moved = self.migrated.get(conversation.id)
            if moved is not None:
                return AppendResult.MOVED if moved == conversation.tenant_id else AppendResult.FOREIGN
            if not create:
                return AppendResult.NOT_FOUND
            held = self.conversations[conversation.id] = conversation
        elif held.tenant_id != conversation.tenant_id:
            return AppendResult.FOREIGN
        history = self.stored.setdefault(conversation.id, [])
        if any(m.id == message.id for m in history):
            return AppendResult.DUPLICATE
        history.insert(sum(1 for m in history if m.created_at <= message.created_at), message)
        self._announce(conversation.tenant_id, message.id)
        return AppendResult.SAVED

    def announce_saved(self, tenant_id: str, message_ids: Sequence[str]) -> None:
        for message_id in message_ids:
            self._announce(tenant_id, message_id)


class FakeArrivals(ActiveMemory):
    """services.ports.Arrivals (announce_saved is the saves')."""

    def listen_for(self, tenant_id: str, message_id: str) -> FakeListener:
        waiters = self.waiters.setdefault((tenant_id, message_id), [])
        listener = FakeListener(waiters)
        waiters.append(listener)
        return listener


class FakeActiveTier(ActiveMemory):
    """services.ports.ActiveTier."""

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    def owned_history(
        self, conversation_id: str, expected: int = 64
    ) -> tuple[str | None, ListHistory]:
        held = self.conversations.get(conversation_id)
        return held.tenant_id if held else None, ListHistory(
            list(self.stored.get(conversation_id, [])),
            self.token_counts.setdefault(conversation_id, {}))

    def messages(self, conversation_id: str) -> list[Message]:
        return list(self.stored.get(conversation_id, []))

    def message_count(self, conversation_id: str) -> int:
        return len(self.stored.get(conversation_id, []))

    def summary(self, conversation_id: str) -> Summary | None:
        return self.summaries.get(conversation_id)

    def save_summary(self, conversation_id: str, summary: Summary) -> bool:
        if conversation_id not in self.conversations:
            return False
        self.summaries[conversation_id] = summary
        return True

    def session_conversation(self, tenant_id: str, session_id: str) -> str | None:
        session = self.sessions.get(session_id)
        return session.conversation_id if session and session.tenant_id == tenant_id else None

    def has_message(self, tenant_id: str, conversation_id: str, message_id: str) -> bool | None:
        held = self.conversations.get(conversation_id)
        if held is None:
            return None
        return held.tenant_id == tenant_id and any(
            m.id == message_id for m in self.stored.get(conversation_id, []))

    def active_conversations(self, tenant_id: str) -> list[Conversation]:
        return sorted((c for c in self.conversations.values() if c.tenant_id == tenant_id),
                      key=lambda c: c.id)


class FakeSessions(ActiveMemory):
    """services.ports.Sessions (with the whole store's close_session(s) and session_state)."""

    def close_sessions_into_timers(
        self, requests: Sequence[tuple[str, str, str, str, int]], keep_seconds: int
    ) -> tuple[list[ClosedSession | None | ForeignSession], list[int]]:
        results: list[ClosedSession | None | ForeignSession] = []
        armed: list[int] = []
        for tenant_id, session_id, closed_at, epoch, second in requests:
            result = self._close(tenant_id, session_id, closed_at, float(epoch))
            results.append(result)
            if isinstance(result, ClosedSession):
                self.buckets.setdefault(second, set()).add(
                    f"{result.conversation_id}:{result.generation}:{epoch}")
                if second not in self.armed:
                    self.armed.add(second)
                    armed.append(second)
        return results, armed

    def _close(
        self, tenant_id: str, session_id: str, closed_at: str, epoch: float
    ) -> ClosedSession | None | ForeignSession:
        session = self.sessions.get(session_id)
        if session is None:
            return None
        if session.tenant_id != tenant_id:
            return ForeignSession(f"session {session_id} belongs to another tenant")
        if session.conversation_id is None:
            return None
        session.generation += 1
        session.closed_at = closed_at
        self.closed[session_id] = epoch
        return ClosedSession(session.conversation_id, session.generation)

    def close_session(
        self, tenant_id: str, session_id: str, closed_at: str
    ) -> ClosedSession | None:
        result = self.close_sessions([(tenant_id, session_id, closed_at)])[0]
        if isinstance(result, ForeignSession):
            raise result
        return result

    def close_sessions(
        self, requests: Sequence[tuple[str, str, str]]
    ) -> list[ClosedSession | None | ForeignSession]:
        return [self._close(t, s, at, parse_timestamp(at).timestamp()) for t, s, at in requests]

    def arm_close_timers(
        self, members: Mapping[int, Sequence[str]], keep_seconds: int
    ) -> list[int]:
        armed = []
        for second, added in members.items():
            if added:
                self.buckets.setdefault(second, set()).update(added)
            if second not in self.armed:
                self.armed.add(second)
                armed.append(second)
        return armed

    def take_close_timer(self, second: int) -> list[str]:
        self.armed.discard(second)
        return sorted(self.buckets.get(second, set()))

    def forget_close_timer_members(self, second: int, members: Sequence[str]) -> None:
        self.buckets.get(second, set()).difference_update(members)

    def open_session(self, tenant_id: str, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None:
            return False
        if session.tenant_id != tenant_id:
            raise ForeignSession(f"session {session_id} belongs to another tenant")
        if session.closed_at is None:
            return False
        session.closed_at = None
        session.generation += 1
        return True

    def session_state(self, session_id: str) -> SessionState | None:
        return self._state(self.sessions.get(session_id))


class FakeMigrationQueue(ActiveMemory):
    """services.ports.MigrationQueue."""

    def closed_sessions_before(self, moment: float, limit: int) -> list[str]:
        return _oldest(self.closed, limit, moment)

    def session_states(self, session_ids: Sequence[str]) -> list[SessionState | None]:
        return [self._state(self.sessions.get(s)) for s in session_ids]

    def forget_closed_session(self, session_id: str) -> None:
        self.closed.pop(session_id, None)

    def mark_ready(self, conversation_id: str, generation: int) -> None:
        self.mark_ready_many([(conversation_id, generation)])

    def mark_ready_many(self, requests: Sequence[tuple[str, int]]) -> None:
        now = self.clock()
        for request in requests:
            self.ready[request] = now  # marked again: its time is the new mark's

    def ready_migrations(self, limit: int) -> list[tuple[str, int]]:
        members = _oldest({f"{c}:{g}": at for (c, g), at in self.ready.items()}, limit)
        return [(c, int(g)) for c, _, g in (m.rpartition(":") for m in members)]

    def forget_ready(self, requests: Sequence[tuple[str, int]]) -> None:
        for request in requests:
            self.ready.pop(tuple(request), None)  # type: ignore[arg-type]

    def idle_conversations(self, before: float, limit: int) -> list[str]:
        return _oldest(self.activity, limit, before)

    def forget_activity(self, conversation_id: str) -> None:
        self.activity.pop(conversation_id, None)

    def quarantined(self, conversation_ids: Sequence[str]) -> list[bool]:
        return [c in self.quarantine_reasons for c in conversation_ids]

    def release_quarantine(self, conversation_id: str) -> bool:
        return self.quarantine_reasons.pop(conversation_id, None) is not None


class FakeMigrationSource(ActiveMemory):
    """services.ports.MigrationSource."""

    def message_counts(self, conversation_ids: Sequence[str]) -> list[int]:
        return [len(self.stored.get(c, [])) for c in conversation_ids]

    def load_for_migration(self, conversation_ids: Sequence[str]) -> list[MigrationLoad | None]:
        loads: list[MigrationLoad | None] = []
        for conversation_id in conversation_ids:
            conversation = self.conversations.get(conversation_id)
            if conversation is None:
                loads.append(None)
                continue
            if conversation_id in self.undecodable:
                raise ConversationRefused(f"conversation {conversation_id} does not decode")
            counts: dict[str, dict[str, int]] = {}
            for (encoding, message_id), tokens in self.token_counts.get(conversation_id, {}).items():
                counts.setdefault(encoding, {})[message_id] = tokens
            loads.append(MigrationLoad(
                conversation, self._state(self.sessions.get(conversation.session_id)),
                list(self.stored.get(conversation_id, [])), self.summaries.get(conversation_id),
                counts))
        return loads

    def finish_migrations(self, done: Sequence[tuple[Conversation, int]]) -> list[bool]:
        finished = []
        for conversation, expected in done:
            if len(self.stored.get(conversation.id, [])) != expected:
                finished.append(False)  # a message came in since the load: go round again
                continue
            for table in (self.conversations, self.stored, self.summaries, self.token_counts,
                          self.activity, self.quarantine_reasons):
                table.pop(conversation.id, None)  # type: ignore[attr-defined]
            self.migrated[conversation.id] = conversation.tenant_id
            finished.append(True)
        return finished

    def release_session(self, session_id: str, conversation_id: str, generation: int) -> bool:
        return self.release_sessions([(session_id, conversation_id, generation)])[0]

    def release_sessions(self, sessions: Sequence[tuple[str, str, int]]) -> list[bool]:
        released = []
        for session_id, conversation_id, generation in sessions:
            session = self.sessions.get(session_id)
            if (session is None or session.conversation_id != conversation_id
                    or session.generation != generation):
                released.append(False)
                continue
            # Owner and generation stay (Redis lets them expire later).
            session.conversation_id = session.closed_at = None
            self.active_sessions.discard(session_id)
            self.closed.pop(session_id, None)
            released.append(True)
        return released

    def quarantine(self, conversation_id: str, reason: str) -> None:
        self.quarantine_reasons[conversation_id] = reason


class FakeActiveErasure(ActiveMemory):
    """services.ports.ActiveErasure."""

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    def active_conversations(self, tenant_id: str) -> list[Conversation]:
        return sorted((c for c in self.conversations.values() if c.tenant_id == tenant_id),
                      key=lambda c: c.id)

    def erase_conversation(self, conversation_id: str) -> bool:
        conversation = self.conversations.pop(conversation_id, None)
        existed = conversation is not None or self.migrated.pop(conversation_id, None) is not None
        for table in (self.stored, self.summaries, self.token_counts, self.activity,
                      self.quarantine_reasons):
            table.pop(conversation_id, None)  # type: ignore[attr-defined]
        self.ready = {r: at for r, at in self.ready.items() if r[0] != conversation_id}
        if conversation is not None:
            session = self.sessions.get(conversation.session_id)
            if session is not None and session.conversation_id == conversation_id:
                del self.sessions[conversation.session_id]
                self.active_sessions.discard(conversation.session_id)
                self.closed.pop(conversation.session_id, None)
        return existed

    def erase_tenant_sessions(self, tenant_id: str) -> int:
        gone = [s for s, record in self.sessions.items() if record.tenant_id == tenant_id]
        for session_id in gone:
            del self.sessions[session_id]
            self.active_sessions.discard(session_id)
            self.closed.pop(session_id, None)
        return len(gone)


class FakeActiveSnapshot(ActiveMemory):
    """services.ports.ActiveSnapshot."""

    def active_snapshot(self) -> list[tuple[Conversation, int]]:
        return [(c, len(self.stored.get(c.id, [])))
                for c in sorted(self.conversations.values(), key=lambda c: (c.tenant_id, c.id))]


@dataclass
class FakeActiveStore(FakeActiveSaves, FakeArrivals, FakeActiveTier, FakeSessions,
                      FakeMigrationQueue, FakeMigrationSource, FakeActiveErasure,
                      FakeActiveSnapshot):
    """The whole active tier (services.ports.ActiveStore): every role over one memory."""
