"""Migration isolates what a store refuses: the rest of the batch moves, the refused
conversation is set aside (kept in Redis, recorded) and the sweeps stop trying it."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest

from conversation.adapters.redis import RedisActiveStore, RedisLocks
from conversation.domain.messages import NewMessage, Role
from conversation.services.migration import (
    ConversationMigrator,
    MigrationOutcome,
    MigrationStatus,
)
from conversation.services.migration_lead import DueMigrations
from conversation.services.ports import ConversationRefused
from conversation.services.save import MessageSaver
from tests.fakes import FakeRepository, WordTokenizer


class RefusingRepository(FakeRepository):
    """Refuses any transaction that holds a poisoned conversation, as PostgreSQL does."""

    poisoned: set[str] = set()
    transactions: int = 0

    def store_conversations(self, batch: Sequence[Any]) -> None:
        self.transactions += 1
        if any(conversation.id in self.poisoned for conversation, _, _ in batch):
            raise ConversationRefused("DataError: \\u0000 cannot be converted to text")
        super().store_conversations(batch)


@pytest.fixture
def active() -> RedisActiveStore:
    return RedisActiveStore(fakeredis.FakeRedis(), prefix="unit:")


def test_the_refused_conversation_is_quarantined_and_the_others_migrate(active) -> None:
    repository = RefusingRepository()
    saver = MessageSaver(active, repository, WordTokenizer())
    ids = [saver.save(NewMessage(tenant_id="acme", session_id=f"s{i}", agent_id="bot",
                                 role=Role.USER, content="hi", message_id=f"m{i}")).conversation_id
           for i in range(16)]
    repository.poisoned = {ids[5]}
    closed = [active.close_session("acme", f"s{i}", "2026-01-01T10:00:00Z") for i in range(16)]
    set_aside: list[MigrationOutcome] = []
    migrator = ConversationMigrator(active, repository, on_quarantined=set_aside.append)

    outcomes = migrator.migrate_many([(c.conversation_id, c.generation) for c in closed])

    assert [o.status for o in outcomes].count(MigrationStatus.MIGRATED) == 15
    assert outcomes[5].status is MigrationStatus.QUARANTINED
    assert set(repository.conversations) == set(ids) - {ids[5]}
    assert [(o.conversation_id, o.reason) for o in set_aside] == [
        (ids[5], "DataError: \\u0000 cannot be converted to text")]
    assert [m.content for m in active.messages(ids[5])] == ["hi"]  # kept in Redis
    assert active.quarantined(ids[4:7]) == [False, True, False]
    assert repository.transactions <= 1 + 2 * 4  # bisected, not one transaction each

    # The sweeps skip it from now on (no second record); a replay tries it again.
    due = DueMigrations(active, migrator, grace_seconds=1, locks=RedisLocks(active.client),
                        idle_seconds=1)
    report = due.sweep(now="2026-01-02T10:00:00Z")
    assert (report.migrated, report.idle, len(set_aside)) == (0, 0, 1)
    assert active.closed_sessions_before(float("inf"), 10) == []

    repository.poisoned = set()
    assert due.retry_quarantined(ids[5]).status is MigrationStatus.MIGRATED
    assert ids[5] in repository.conversations and active.quarantined([ids[5]]) == [False]


def test_no_quarantine_mark_without_its_dead_letter(active) -> None:
    """The dead letter is recorded before the mark that makes the sweeps skip the conversation:
    when it cannot be recorded, the conversation is not set aside silently (no `dlq list`
    entry, skipped for ever) but stays due, and a later pass quarantines it with its letter."""
    repository = RefusingRepository()
    saver = MessageSaver(active, repository, WordTokenizer())
    poison = saver.save(NewMessage(tenant_id="acme", session_id="s", agent_id="bot",
                                   role=Role.USER, content="hi", message_id="m")).conversation_id
    repository.poisoned = {poison}
    closed = active.close_session("acme", "s", "2026-01-01T10:00:00Z")

    def unrecorded(outcome: MigrationOutcome) -> None:
        raise ConnectionError("PostgreSQL is down: the dead letter is not stored")

    with pytest.raises(ConnectionError):
        ConversationMigrator(active, repository, on_quarantined=unrecorded).migrate_many(
            [(poison, closed.generation)])
    assert active.quarantined([poison]) == [False]

    recorded: list[MigrationOutcome] = []
    migrator = ConversationMigrator(active, repository, on_quarantined=recorded.append)
    [outcome] = migrator.migrate_many([(poison, closed.generation)])
    assert outcome.status is MigrationStatus.QUARANTINED
    assert [o.conversation_id for o in recorded] == [poison]
    assert active.quarantined([poison]) == [True]


def test_a_quarantine_record_that_cannot_be_stored_raises(monkeypatch) -> None:
    """Other dead letters only log a channel's failure; a quarantine record must be in the
    table (`dlq list`, replay), so its store failing raises (and the mark is not set)."""
    from conversation.adapters.dead_letters import DeadLetter, DeadLetterOffice

    office = DeadLetterOffice(None, "memory://")
    published: list[str] = []
    monkeypatch.setattr(office, "_publish", lambda letter: published.append(letter.task_name))

    def down(letter: Any, payload: Any = None) -> None:
        raise ConnectionError("PostgreSQL is down")

    monkeypatch.setattr(office, "_store", down)
    office.send(DeadLetter(task_name="t", kwargs={}, error="e", queue="q"))  # logged only
    with pytest.raises(ConnectionError):
        office.quarantine("conv-1", "DataError")
    assert published == ["t", "conversation.migrate_quarantined"]  # the other channels ran
