"""services.ports.ArchiveWrites and ArchiveTier: what a migration writes, read back."""
from __future__ import annotations

from dataclasses import replace

from conversation.domain.messages import ConversationStatus
from conversation.domain.stats import summarise_conversation
from conversation.services.ports import Summary, TenantConflict
from tests.contract.conftest import conversation, message

CLOSED_AT = "2026-01-01T10:05:00.000000Z"


def closed(ids, name="c", session="s", tenant="acme", at="2026-01-01T10:00:00.000000Z"):
    return replace(conversation(ids, name, session=session, tenant=tenant, at=at),
                   status=ConversationStatus.CLOSED, closed_at=CLOSED_AT)


def store(archive, c, messages):
    return archive.store_conversations([(c, messages, summarise_conversation(messages, CLOSED_AT))])


def test_a_stored_conversation_reads_back_in_order(archive, ids) -> None:
    c = closed(ids)
    assert store(archive, c, [message("a", 1), message("b", 2), message("b2", 2)]) == []
    held = archive.get_conversation(c.id)
    assert (held.id, held.tenant_id, held.session_id, held.status) == (
        c.id, c.tenant_id, c.session_id, ConversationStatus.CLOSED)
    assert [m.id for m in archive.messages(c.id)] == ["a", "b", "b2"]
    owner, history = archive.owned_history(c.id, 2)
    assert owner == c.tenant_id and history.count() == 3
    assert [r.id for chunk in history.newest_chunks() for r in chunk] == ["b2", "b", "a"]
    assert archive.owned_history(ids("nothing"))[0] is None
    assert archive.get_conversation(ids("nothing")) is None


def test_storing_again_adds_only_what_is_new(archive, ids) -> None:
    c = closed(ids)
    store(archive, c, [message("a", 1), message("b", 3)])
    store(archive, c, [message("a", 1), message("b", 3), message("mid", 2)])
    assert [m.id for m in archive.messages(c.id)] == ["a", "mid", "b"]


def test_another_tenants_id_is_returned_and_nothing_of_it_written(archive, ids) -> None:
    mine = closed(ids)
    store(archive, mine, [message("a", 1)])
    theirs = replace(closed(ids, tenant="other", session="s2"), id=mine.id)
    fresh = closed(ids, "fresh", session="s3")
    conflicts = archive.store_conversations([
        (theirs, [message("x", 1)], summarise_conversation([message("x", 1)], CLOSED_AT)),
        (fresh, [message("f", 1)], summarise_conversation([message("f", 1)], CLOSED_AT)),
    ])
    assert conflicts == [TenantConflict(mine.id, theirs.tenant_id)]
    assert [m.id for m in archive.messages(mine.id)] == ["a"]
    assert archive.get_conversation(mine.id).tenant_id == mine.tenant_id
    assert [m.id for m in archive.messages(fresh.id)] == ["f"]


def test_has_message_is_the_tenants_own(archive, ids) -> None:
    c = closed(ids)
    store(archive, c, [message("a", 1)])
    assert archive.has_message(c.tenant_id, c.id, "a") is True
    assert archive.has_message(c.tenant_id, c.id, "z") is False
    assert archive.has_message(ids("intruder"), c.id, "a") is False


def test_the_sessions_latest_conversation_is_the_last_started(archive, ids) -> None:
    first = closed(ids, "first", at="2026-01-01T09:00:00.000000Z")
    second = closed(ids, "second", at="2026-01-01T11:00:00.000000Z")
    store(archive, second, [message("b", 1)])
    store(archive, first, [message("a", 1)])
    assert archive.latest_conversation_for_session(first.tenant_id, first.session_id) == second.id
    assert archive.latest_conversation_for_session(ids("intruder"), first.session_id) is None


def test_a_summary_goes_with_the_conversation_and_is_replaced(archive, ids) -> None:
    c = replace(closed(ids), summary="migrated", summary_through="k1")
    store(archive, c, [message("a", 1)])
    assert archive.summary(c.id) == Summary("migrated", "k1")
    assert archive.save_summary(c.id, Summary("newer", "k2")) is True
    assert archive.summary(c.id) == Summary("newer", "k2")
    assert archive.save_summary(ids("nothing"), Summary("x", "y")) is False
    assert archive.summary(ids("nothing")) is None


def test_token_counts_are_kept_once(archive, ids) -> None:
    c = closed(ids)
    store(archive, c, [message("a", 1), message("b", 2)])
    archive.store_token_counts(c.id, "letters", {"a": 5})
    archive.store_token_counts(c.id, "letters", {"a": 99, "b": 6})
    _, history = archive.owned_history(c.id)
    records = {r.id: r.other_tokens for chunk in history.newest_chunks("letters") for r in chunk}
    assert records == {"a": 5, "b": 6}
