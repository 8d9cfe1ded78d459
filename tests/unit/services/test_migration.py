"""ConversationMigrator and DueMigrations on the fakes: what moves, what stays, and why."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from conversation.domain.messages import Conversation, Role
from conversation.services.migration import (
    MIGRATION_LEAD,
    ConversationMigrator,
    DueMigrations,
    MigrationOutcome,
    MigrationStatus,
)
from conversation.services.ports import Summary
from conversation.services.save import MessageSaver
from tests.fakes import FakeLocks, FakeRepository, WordTokenizer
from tests.unit.services.conftest import command

GRACE = 30
EPOCH_10H = 1767261600  # 2026-01-01T10:00:00Z


@pytest.fixture
def saver(active, archive) -> MessageSaver:
    return MessageSaver(active, archive, WordTokenizer())


def closed_conversation(saver, active, session="s-1", count=2) -> tuple[str, int]:
    for i in range(count):
        outcome = saver.save(command(f"{session} m{i}", session_id=session,
                                     created_at=f"2026-01-01T09:59:0{i}Z"))
    closed = active.close_session("acme", session, "2026-01-01T10:00:00Z")
    return outcome.conversation_id, closed.generation


def test_a_migration_moves_everything_once(saver, active, archive) -> None:
    conversation_id, generation = closed_conversation(saver, active)
    active.save_summary(conversation_id, Summary("so far", "key"))
    migrated: list[MigrationOutcome] = []
    migrator = ConversationMigrator(active, archive, on_migrated=migrated.append)
    first = migrator.migrate(conversation_id, generation)
    again = migrator.migrate(conversation_id, generation)
    assert (first.status, first.messages, again.status) == (
        MigrationStatus.MIGRATED, 2, MigrationStatus.NOT_ACTIVE)
    assert [m.content for m in archive.messages(conversation_id)] == ["s-1 m0", "s-1 m1"]
    persisted = archive.get_conversation(conversation_id)
    assert (persisted.status, persisted.closed_at) == ("closed", "2026-01-01T10:00:00Z")
    assert archive.summary(conversation_id) == Summary("so far", "key")
    assert archive.stats[conversation_id].message_count == 2
    assert active.get_conversation(conversation_id) is None
    assert active.session_conversation("acme", "s-1") is None  # released
    assert [o.conversation_id for o in migrated] == [conversation_id]


def test_a_reopened_session_is_stale_and_stays(saver, active, archive) -> None:
    conversation_id, generation = closed_conversation(saver, active)
    active.open_session("acme", "s-1")
    outcome = ConversationMigrator(active, archive).migrate(conversation_id, generation)
    assert outcome.status is MigrationStatus.STALE
    assert archive.get_conversation(conversation_id) is None
    assert len(active.messages(conversation_id)) == 2


def test_costs_in_other_encodings_go_along(saver, active, archive) -> None:
    conversation_id, generation = closed_conversation(saver, active)
    first_id = active.messages(conversation_id)[0].id
    active.owned_history(conversation_id)[1].store_counts("letters", {first_id: 9})
    ConversationMigrator(active, archive).migrate(conversation_id, generation)
    assert archive.token_counts[conversation_id] == {("letters", first_id): 9}


class ArrivingDuringWrites(FakeRepository):
    """A message reaches the active tier while each write runs (a race with a reconnect)."""

    saver: Any = None
    arrivals: int = 0

    def store_conversations(self, batch: Sequence[Any]) -> Any:
        conflicts = super().store_conversations(batch)
        if self.arrivals:
            self.arrivals -= 1
            self.saver.save(command(f"arrival {self.arrivals}",
                                    created_at="2026-01-01T09:59:30Z"))
        return conflicts


def test_messages_arriving_meanwhile_go_round_again_then_along(active) -> None:
    archive = ArrivingDuringWrites()
    archive.saver = saver = MessageSaver(active, archive, WordTokenizer())
    conversation_id, generation = closed_conversation(saver, active)
    archive.arrivals = 2
    outcome = ConversationMigrator(active, archive).migrate(conversation_id, generation)
    assert (outcome.status, outcome.messages) == (MigrationStatus.MIGRATED, 4)
    assert len(archive.messages(conversation_id)) == 4
    assert active.get_conversation(conversation_id) is None


def test_messages_that_never_stop_arriving_leave_it_busy(active) -> None:
    archive = ArrivingDuringWrites()
    archive.saver = saver = MessageSaver(active, archive, WordTokenizer())
    conversation_id, generation = closed_conversation(saver, active)
    archive.arrivals = 100
    outcome = ConversationMigrator(active, archive).migrate(conversation_id, generation)
    assert outcome.status is MigrationStatus.BUSY
    assert active.get_conversation(conversation_id) is not None


def test_a_conversation_that_does_not_decode_is_quarantined_and_the_others_move(
        saver, active, archive) -> None:
    requests = [closed_conversation(saver, active, f"s-{i}", count=1) for i in range(4)]
    poisoned = requests[2][0]
    active.undecodable.add(poisoned)
    set_aside: list[MigrationOutcome] = []
    outcomes = ConversationMigrator(active, archive, on_quarantined=set_aside.append
                                    ).migrate_many(requests)
    assert [o.status for o in outcomes] == [MigrationStatus.MIGRATED] * 2 + [
        MigrationStatus.QUARANTINED, MigrationStatus.MIGRATED]
    assert [o.conversation_id for o in set_aside] == [poisoned]
    assert active.quarantined([poisoned]) == [True]
    assert len(active.messages(poisoned)) == 1  # kept as it is


def test_an_id_another_tenant_holds_in_the_archive_is_quarantined(saver, active, archive) -> None:
    conversation_id, generation = closed_conversation(saver, active)
    archive.conversations[conversation_id] = Conversation(
        conversation_id, "other", "s-other", "bot", "2026-01-01T00:00:00Z")
    outcome = ConversationMigrator(active, archive).migrate(conversation_id, generation)
    assert outcome.status is MigrationStatus.QUARANTINED
    assert archive.get_conversation(conversation_id).tenant_id == "other"
    assert archive.messages(conversation_id) == []
    assert active.get_conversation(conversation_id) is not None


@pytest.fixture
def due(active, archive) -> DueMigrations:
    return DueMigrations(active, ConversationMigrator(active, archive), GRACE, FakeLocks(),
                         idle_seconds=3600, gather_seconds=0)


def test_the_lead_migrates_everything_ready(saver, active, archive, due) -> None:
    requests = [closed_conversation(saver, active, f"s-{i}", count=1) for i in range(3)]
    due.mark_ready(requests[:2])
    outcomes = due.migrate_when_ready(*requests[2])
    assert sorted(o.conversation_id for o in outcomes) == sorted(c for c, _ in requests)
    assert active.ready_migrations(10) == []


def test_a_timer_finding_the_lead_taken_leaves_its_conversation_to_the_holder(
        saver, active, due) -> None:
    conversation_id, generation = closed_conversation(saver, active)
    token = due.locks.acquire(MIGRATION_LEAD, 60)
    assert due.migrate_when_ready(conversation_id, generation) == []
    assert active.ready_migrations(10) == [(conversation_id, generation)]
    due.locks.release(MIGRATION_LEAD, token)
    assert [o.status for o in due.lead()] == [MigrationStatus.MIGRATED]


def test_the_sweep_migrates_what_its_lost_timer_left(saver, active, archive, due) -> None:
    conversation_id, _ = closed_conversation(saver, active)
    # Closed at 10:00: due at 10:00:30, past the margin (one more grace) at 10:01.
    assert due.sweep_lost_timers(now="2026-01-01T10:00:59Z") == (0, 0)
    assert due.sweep_lost_timers(now="2026-01-01T10:01:01Z") == (1, 1)
    assert len(archive.messages(conversation_id)) == 2


def test_the_sweeps_skip_the_quarantined(saver, active, due) -> None:
    conversation_id, _ = closed_conversation(saver, active)
    active.quarantine(conversation_id, "refused")
    assert due.due(EPOCH_10H + 3600) == []
    assert active.closed_sessions_before(EPOCH_10H + 3600, 10) == []  # not every sweep again


def test_an_idle_conversation_is_migrated_with_its_session_open(saver, active, archive,
                                                                 due) -> None:
    outcome = saver.save(command("still open"))
    now = active.activity[outcome.conversation_id]
    assert due.migrate_idle(now + 3599) == 0
    assert due.migrate_idle(now + 3601) == 1
    assert [m.content for m in archive.messages(outcome.conversation_id)] == ["still open"]


def test_a_replay_retries_a_quarantined_conversation_once(saver, active, archive, due) -> None:
    conversation_id, _ = closed_conversation(saver, active)
    active.quarantine(conversation_id, "fixed since")
    assert due.retry_quarantined(conversation_id).status is MigrationStatus.MIGRATED
    assert due.retry_quarantined(conversation_id).status is MigrationStatus.NOT_QUARANTINED
    assert len(archive.messages(conversation_id)) == 2


def test_the_roles_speak_of_their_own(saver, active, archive) -> None:
    """The assistant's message migrates with its role."""
    saver.save(command("question"))
    outcome = saver.save(command("answer", role=Role.ASSISTANT))
    closed = active.close_session("acme", "s-1", "2026-01-02T00:00:00Z")
    ConversationMigrator(active, archive).migrate(outcome.conversation_id, closed.generation)
    assert [m.role for m in archive.messages(outcome.conversation_id)] == [Role.USER,
                                                                         Role.ASSISTANT]
