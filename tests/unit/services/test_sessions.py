"""SessionLifecycle on the fakes: closes share a timer per second, a reconnect cancels, the
timer hands what is due to the migration lead, outage conversations close with the session."""
from __future__ import annotations

import pytest

from conversation.domain.errors import ForeignSession
from conversation.domain.refusals import RefusalReason
from conversation.services.migration import ConversationMigrator, DueMigrations, MigrationStatus
from conversation.services.ports import ActiveStoreUnavailable, ClosedSession
from conversation.services.save import MessageSaver
from conversation.services.sessions import SessionLifecycle
from tests.fakes import FakeLocks, RecordingScheduler, UnreachableStore, WordTokenizer
from tests.unit.services.conftest import command

EPOCH_10H = 1767261600  # 2026-01-01T10:00:00Z
GRACE = 30


@pytest.fixture
def scheduler() -> RecordingScheduler:
    return RecordingScheduler()


@pytest.fixture
def sessions(active, archive, scheduler) -> SessionLifecycle:
    migrations = DueMigrations(active, ConversationMigrator(active, archive), GRACE, FakeLocks(),
                               gather_seconds=0)
    return SessionLifecycle(active, scheduler, GRACE, archive, migrations)


@pytest.fixture
def saver(active, archive) -> MessageSaver:
    return MessageSaver(active, archive, WordTokenizer())


def test_closes_within_one_second_share_one_timer_at_its_end(saver, sessions, scheduler) -> None:
    for session in ("s-1", "s-2"):
        saver.save(command(f"hi {session}", session_id=session,
                           created_at="2026-01-01T09:59:00Z"))
    results = sessions.close_many([("acme", "s-1", "2026-01-01T10:00:00.250000Z"),
                                   ("acme", "s-2", "2026-01-01T10:00:00.750000Z")],
                                  now=EPOCH_10H + 0.5)
    assert [type(r) for r in results] == [ClosedSession, ClosedSession]
    # Their grace ends within 10:00:30-31: the timer of the second ending 10:00:31, 30.5 s away.
    assert scheduler.timers == [(EPOCH_10H + 31, 30.5)]


def test_a_session_without_a_conversation_closes_to_none(sessions, scheduler) -> None:
    assert sessions.close("acme", "s-none", "2026-01-01T10:00:00Z") is None
    assert scheduler.timers == []


def test_another_tenants_session_is_refused_in_its_place(saver, sessions) -> None:
    saver.save(command("mine"))
    [refusal] = sessions.close_many([("intruder", "s-1", None)])
    assert refusal.reason is RefusalReason.FOREIGN_SESSION
    with pytest.raises(ForeignSession):
        sessions.close("intruder", "s-1")


def test_a_reconnect_within_the_grace_cancels_the_pending_migration(
        saver, active, sessions) -> None:
    outcome = saver.save(command("before", created_at="2026-01-01T09:59:00Z"))
    sessions.close("acme", "s-1", "2026-01-01T10:00:00Z")
    assert sessions.open("acme", "s-1") is True
    assert sessions.open("acme", "s-1") is False  # open already
    fired = sessions.fire_timer(EPOCH_10H + GRACE, now=EPOCH_10H + GRACE + 1)
    assert [o.status for o in fired] == [MigrationStatus.STALE]
    assert [m.content for m in active.messages(outcome.conversation_id)] == ["before"]


def test_a_timer_hands_its_due_sessions_to_the_lead(saver, active, archive, sessions) -> None:
    outcome = saver.save(command("before", created_at="2026-01-01T09:59:00Z"))
    sessions.close_many([("acme", "s-1", "2026-01-01T10:00:00Z")], now=EPOCH_10H)
    [migrated] = sessions.fire_timer(EPOCH_10H + GRACE, now=EPOCH_10H + GRACE + 1)
    assert (migrated.status, migrated.conversation_id) == (MigrationStatus.MIGRATED,
                                                           outcome.conversation_id)
    assert [m.content for m in archive.messages(outcome.conversation_id)] == ["before"]
    assert active.take_close_timer(EPOCH_10H + GRACE) == []  # handed on, gone from the bucket
    assert active.ready_migrations(10) == []


def test_a_timer_early_by_another_clock_keeps_its_sessions_and_is_set_again(
        saver, active, sessions, scheduler) -> None:
    outcome = saver.save(command("before", created_at="2026-01-01T09:59:00Z"))
    sessions.close_many([("acme", "s-1", "2026-01-01T10:00:00Z")], now=EPOCH_10H)
    assert sessions.fire_timer(EPOCH_10H + GRACE, now=EPOCH_10H + GRACE - 2) == []
    assert scheduler.timers[-1] == (EPOCH_10H + GRACE, 2.0)
    assert active.get_conversation(outcome.conversation_id) is not None
    assert len(active.take_close_timer(EPOCH_10H + GRACE)) == 1


def test_the_outage_conversations_close_with_the_session(archive, scheduler) -> None:
    saver = MessageSaver(UnreachableStore(), archive, WordTokenizer())  # type: ignore[arg-type]
    during = saver.save(command("during the outage"))
    sessions = SessionLifecycle(UnreachableStore(), scheduler, GRACE, archive)  # type: ignore[arg-type]
    with pytest.raises(ActiveStoreUnavailable):  # the task retries the Redis side
        sessions.close("acme", "s-1", "2026-01-01T10:00:00Z")
    closed = archive.get_conversation(during.conversation_id)
    assert (closed.status, closed.closed_at) == ("closed", "2026-01-01T10:00:00.000000Z")


def test_a_reopen_with_the_active_tier_down_cancels_nothing(scheduler) -> None:
    sessions = SessionLifecycle(UnreachableStore(), scheduler, GRACE)  # type: ignore[arg-type]
    assert sessions.open("acme", "s-1") is False
