"""services.ports.ArchiveErasure: the archive's part of an erasure, and retention."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from conversation.domain.messages import ConversationStatus
from conversation.domain.stats import summarise_conversation
from tests.contract.conftest import conversation, message


def migrated(archive, ids, name, session, tenant="acme", second=1):
    c = replace(conversation(ids, name, session=session, tenant=tenant),
                status=ConversationStatus.CLOSED, closed_at="2026-01-01T10:05:00.000000Z")
    history = [message(f"{name}-1", second)]
    archive.store_conversations([(c, history, summarise_conversation(history, c.closed_at))])
    return c


def test_a_tenants_retention_is_set_and_cleared(archive, ids) -> None:
    tenant = ids("acme")
    archive.set_retention(tenant, 30)
    assert archive.retention()[tenant] == 30
    archive.set_retention(tenant, 7)
    assert archive.retention()[tenant] == 7
    archive.set_retention(tenant, None)
    assert tenant not in archive.retention()


def test_expired_conversations_are_those_whose_last_message_is_older(archive, ids) -> None:
    old = migrated(archive, ids, "old", "s1", second=1)
    recent = migrated(archive, ids, "recent", "s2", second=40)
    migrated(archive, ids, "theirs", "s3", tenant="other", second=1)
    cutoff = datetime(2026, 1, 1, 10, 0, 20, tzinfo=UTC)
    assert archive.expired_conversations(old.tenant_id, cutoff, 10) == [old.id]
    later = datetime(2026, 1, 2, tzinfo=UTC)
    assert sorted(archive.expired_conversations(old.tenant_id, later, 10)) == sorted(
        [old.id, recent.id])
    assert len(archive.expired_conversations(old.tenant_id, later, 1)) == 1


def test_an_erased_conversation_is_gone(archive, ids) -> None:
    c = migrated(archive, ids, "c", "s1")
    assert archive.erase_conversation(c.id) is True
    assert archive.get_conversation(c.id) is None and archive.messages(c.id) == []
    assert archive.erase_conversation(c.id) is False


def test_a_tenant_is_erased_whole_and_no_other(archive, ids) -> None:
    a = migrated(archive, ids, "a", "s1")
    b = migrated(archive, ids, "b", "s2")
    theirs = migrated(archive, ids, "x", "s3", tenant="other")
    archive.set_retention(a.tenant_id, 30)
    assert sorted(archive.conversation_ids(a.tenant_id)) == sorted([a.id, b.id])
    removed = archive.erase_tenant(a.tenant_id)
    assert (removed["conversations"], removed["dead_letters"]) == (2, 0)
    assert archive.conversation_ids(a.tenant_id) == []
    assert a.tenant_id not in archive.retention()
    assert archive.conversation_ids(theirs.tenant_id) == [theirs.id]
    # Its session ids are free again.
    assert archive.claim_sessions([(ids("new"), a.session_id)])[a.session_id].new is True
