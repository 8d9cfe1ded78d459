"""Eraser on the fakes: a conversation or a tenant gone from both tiers, its dead letters with
it; retention erases what is older than the tenant's days."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conversation.services.erasure import Eraser, Target
from conversation.services.migration import ConversationMigrator
from conversation.services.save import MessageSaver
from tests.fakes import WordTokenizer
from tests.unit.services.conftest import command


class QueuedLetters:
    """The broker's dead-letter queue: payloads rewritten through the eraser's edit."""

    def __init__(self, *payloads: dict[str, Any]) -> None:
        self.payloads = list(payloads)

    def erase_queued(self, edit: Any) -> int:
        edited = [(payload, edit(payload)) for payload in self.payloads]
        self.payloads = [after for _, after in edited if after is not None]
        return sum(1 for before, after in edited if before != after)


@pytest.fixture
def saver(active, archive) -> MessageSaver:
    return MessageSaver(active, archive, WordTokenizer())


def migrated(saver, active, archive, session: str, at: str = "2026-01-01T10:00:00Z") -> str:
    conversation_id = saver.save(command(f"hi {session}", session_id=session,
                                         created_at=at)).conversation_id
    closed = active.close_session("acme", session, at)
    ConversationMigrator(active, archive).migrate(conversation_id, closed.generation)
    return conversation_id


def test_an_active_conversation_is_erased_with_its_dead_letters(saver, active, archive) -> None:
    conversation_id = saver.save(command("secret")).conversation_id
    archive.dead_letters = [{"tenant_id": "acme", "conversation_id": conversation_id},
                            {"tenant_id": "acme", "session_id": "s-1"},
                            {"tenant_id": "acme", "conversation_id": "other"}]
    later: list[list[Target]] = []
    queued = QueuedLetters({"tenant_id": "acme", "conversation_id": conversation_id},
                           {"tenant_id": "acme", "conversation_id": "kept"})
    eraser = Eraser(active, archive, queued, erase_later=later.append)
    assert eraser.erase_conversation(conversation_id) is True
    assert active.get_conversation(conversation_id) is None
    assert active.session_state("s-1") is None
    assert archive.dead_letters == [{"tenant_id": "acme", "conversation_id": "other"}]
    assert later == [[("acme", conversation_id, "s-1")]]
    assert eraser.erase_queued_now(later[0]) == 1
    assert queued.payloads == [{"tenant_id": "acme", "conversation_id": "kept"}]
    assert eraser.erase_conversation(conversation_id) is False


def test_a_migrated_conversation_is_erased_from_the_archive_and_its_marker(
        saver, active, archive) -> None:
    conversation_id = migrated(saver, active, archive, "s-1")
    assert Eraser(active, archive).erase_conversation(conversation_id) is True
    assert archive.get_conversation(conversation_id) is None
    assert conversation_id not in active.migrated


def test_a_tenant_is_erased_from_both_tiers(saver, active, archive) -> None:
    archived = migrated(saver, active, archive, "s-1")
    live = saver.save(command("live", session_id="s-2")).conversation_id
    theirs = saver.save(command("theirs", tenant_id="other", session_id="s-3")).conversation_id
    archive.dead_letters = [{"tenant_id": "acme"}, {"tenant_id": "other"}]
    erased = Eraser(active, archive).erase_tenant("acme")
    # The live conversation's session went with it; the migrated one's released session is
    # what is left to forget.
    assert (erased.conversations, erased.dead_letters, erased.sessions) == (2, 1, 1)
    assert active.session_state("s-1") is None and active.session_state("s-3") is not None
    assert archive.get_conversation(archived) is None and active.get_conversation(live) is None
    assert active.get_conversation(theirs) is not None


def test_retention_erases_what_is_older_than_the_tenants_days(saver, active, archive) -> None:
    old = migrated(saver, active, archive, "s-1", at="2026-01-01T10:00:00Z")
    recent = migrated(saver, active, archive, "s-2", at="2026-03-01T10:00:00Z")
    archive.set_retention("acme", 30)
    erased = Eraser(active, archive).purge_expired(now=datetime(2026, 3, 10, tzinfo=UTC))
    assert erased == 1
    assert archive.get_conversation(old) is None and archive.get_conversation(recent)


def test_a_tenant_keeping_everything_loses_nothing(saver, active, archive) -> None:
    kept = migrated(saver, active, archive, "s-1", at="2020-01-01T10:00:00Z")
    archive.set_retention("acme", 0)
    assert Eraser(active, archive).purge_expired() == 0
    assert archive.get_conversation(kept) is not None
