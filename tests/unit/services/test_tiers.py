"""Tiers on the fakes: the active tier answers while it holds a conversation, the archive
after; the tenant check; the fallback while the active tier is down."""
from __future__ import annotations

import pytest

from conversation.services.migration import ConversationMigrator
from conversation.services.ports import ActiveStoreUnavailable
from conversation.services.save import MessageSaver
from conversation.services.tiers import Tier, Tiers
from tests.fakes import UnreachableStore, WordTokenizer
from tests.unit.services.conftest import command


@pytest.fixture
def saver(active, archive) -> MessageSaver:
    return MessageSaver(active, archive, WordTokenizer())


def test_an_active_conversation_is_the_active_tiers_and_its_tenants(saver, active,
                                                                    archive) -> None:
    conversation_id = saver.save(command("hello")).conversation_id
    tiers = Tiers(active, archive)
    located = tiers.locate("acme", conversation_id)
    assert located.tier is Tier.REDIS
    assert [m.content for m in located.history.messages()] == ["hello"]
    assert tiers.locate("intruder", conversation_id) is None
    assert tiers.owned_history("intruder", conversation_id, 8) is None
    assert tiers.has_message("acme", conversation_id, "hello")
    assert not tiers.has_message("intruder", conversation_id, "hello")
    assert [c.id for c in tiers.active_conversations("acme")] == [conversation_id]
    assert tiers.active_message_count(conversation_id) == 1


def test_a_migrated_conversation_is_the_archives(saver, active, archive) -> None:
    conversation_id = saver.save(command("hello")).conversation_id
    closed = active.close_session("acme", "s-1", "2026-01-02T00:00:00Z")
    ConversationMigrator(active, archive).migrate(conversation_id, closed.generation)
    tiers = Tiers(active, archive)
    assert tiers.locate("acme", conversation_id).tier is Tier.POSTGRES
    assert tiers.owned_history("acme", conversation_id, 8).tier is Tier.POSTGRES
    assert tiers.session_conversation("acme", "s-1") == conversation_id  # its latest there
    assert tiers.has_message("acme", conversation_id, "hello")
    assert tiers.active_conversations("acme") == []


def test_while_the_active_tier_is_down_the_archive_answers_what_it_can(saver, active,
                                                                       archive) -> None:
    conversation_id = saver.save(command("hello")).conversation_id
    closed = active.close_session("acme", "s-1", "2026-01-02T00:00:00Z")
    ConversationMigrator(active, archive).migrate(conversation_id, closed.generation)
    tiers = Tiers(UnreachableStore(), archive)  # type: ignore[arg-type]
    assert tiers.locate("acme", conversation_id).tier is Tier.POSTGRES
    assert tiers.active_conversations("acme") == []
    # One the archive lacks may be live in the active tier: neither missing nor readable.
    with pytest.raises(ActiveStoreUnavailable):
        tiers.locate("acme", "maybe-live")
