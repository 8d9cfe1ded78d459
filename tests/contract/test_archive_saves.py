"""services.ports.ArchiveSaves and OutageCloses: the save path's writes to the archive, the
sessions' durable owners, and saves during an outage of the active tier."""
from __future__ import annotations

from dataclasses import replace

import pytest

from conversation.domain.errors import ForeignConversation, ForeignSession
from conversation.domain.messages import ConversationStatus
from conversation.domain.stats import summarise_conversation
from conversation.services.ports import ActiveStoreUnavailable, SessionOwner
from tests.contract.conftest import conversation, message


def migrated(archive, ids, name="c", session="s", tenant="acme"):
    c = replace(conversation(ids, name, session=session, tenant=tenant),
                status=ConversationStatus.CLOSED, closed_at="2026-01-01T10:05:00.000000Z")
    history = [message(f"{name}-1", 1), message(f"{name}-3", 3)]
    archive.store_conversations([(c, history, summarise_conversation(history, c.closed_at))])
    return c


def test_a_session_is_owned_by_its_first_claimant(archive, ids) -> None:
    tenant, other = ids("acme"), ids("other")
    s1, s2 = ids("s1"), ids("s2")
    assert archive.claim_sessions([(tenant, s1), (tenant, s2)]) == {
        s1: SessionOwner(tenant, new=True), s2: SessionOwner(tenant, new=True)}
    assert archive.claim_sessions([(other, s1)]) == {s1: SessionOwner(tenant, new=False)}


def test_a_migrated_conversations_session_is_owned(archive, ids) -> None:
    c = migrated(archive, ids)
    assert archive.claim_sessions([(ids("other"), c.session_id)]) == {
        c.session_id: SessionOwner(c.tenant_id, new=False)}


def test_stored_messages_finds_a_redelivery_in_the_sessions_conversations(archive, ids) -> None:
    c = migrated(archive, ids)
    wanted = [(c.tenant_id, c.session_id, "c-1"), (c.tenant_id, c.session_id, "new"),
              (ids("other"), c.session_id, "c-1")]
    assert archive.stored_messages(wanted) == {(c.tenant_id, c.session_id, "c-1"): c.id}


def test_an_append_to_a_moved_conversation_is_placed_and_idempotent(archive, ids) -> None:
    c = migrated(archive, ids)
    assert archive.append_message(c.id, c.tenant_id, message("late", 2)) is True
    assert archive.append_message(c.id, c.tenant_id, message("late", 2)) is False
    assert [m.id for m in archive.messages(c.id)] == ["c-1", "late", "c-3"]
    with pytest.raises(ForeignConversation):
        archive.append_message(c.id, ids("intruder"), message("x", 4))
    assert archive.get_conversation(c.id).tenant_id == c.tenant_id


def test_outage_saves_share_the_sessions_open_conversation(archive, ids) -> None:
    c = conversation(ids)
    first = archive.save_direct(c, message("m1", 1), False)
    assert first == (c.id, True)
    other_candidate = replace(c, id=ids("other"))
    assert archive.save_direct(other_candidate, message("m2", 2), False) == (c.id, True)
    assert archive.save_direct(other_candidate, message("m1", 1), False) == (c.id, False)
    assert [m.id for m in archive.messages(c.id)] == ["m1", "m2"]
    assert archive.get_conversation(c.id).status is ConversationStatus.ACTIVE


def test_an_outage_save_is_refused_for_another_tenants_session(archive, ids) -> None:
    c = conversation(ids)
    archive.save_direct(c, message("m1", 1), False)
    intruder = replace(c, tenant_id=ids("intruder"), id=ids("x"))
    with pytest.raises(ForeignSession):
        archive.save_direct(intruder, message("x", 1), False)


def test_an_outage_save_to_an_unknown_explicit_conversation_waits(archive, ids) -> None:
    """It may be live in the unreachable active tier: not decidable now."""
    c = conversation(ids)
    with pytest.raises(ActiveStoreUnavailable):
        archive.save_direct(c, message("m1", 1), True)
    mine = migrated(archive, ids, "mine", session="s2")
    assert archive.save_direct(replace(mine, session_id=mine.session_id), message("n", 5),
                               True) == (mine.id, True)
    theirs = migrated(archive, ids, "theirs", session="s3", tenant="other")
    with pytest.raises(ForeignConversation):
        archive.save_direct(replace(theirs, tenant_id=mine.tenant_id,
                                    session_id=mine.session_id), message("y", 6), True)


def test_a_close_ends_the_sessions_outage_conversations(archive, ids) -> None:
    c = conversation(ids)
    archive.save_direct(c, message("m1", 1), False)
    assert archive.close_active(c.tenant_id, c.session_id, "2026-01-01T10:09:00.000000Z") == [c.id]
    held = archive.get_conversation(c.id)
    assert (held.status, held.closed_at) == (ConversationStatus.CLOSED,
                                             "2026-01-01T10:09:00.000000Z")
    assert archive.close_active(c.tenant_id, c.session_id, "2026-01-01T10:10:00.000000Z") == []
    # The next outage save starts another conversation.
    following = replace(c, id=ids("following"))
    assert archive.save_direct(following, message("m2", 20), False) == (following.id, True)


def test_a_migration_takes_over_what_its_session_saved_during_an_outage(archive, ids) -> None:
    """An outage does not split a conversation: the one the session had in the active tier
    absorbs what was saved straight into the archive meanwhile (a message in both, once).
    An outage conversation that ended before it began is a conversation of its own."""
    owner = conversation(ids, "owner")  # begun in the active tier at 10:00:00
    earlier = replace(owner, id=ids("earlier"))
    archive.save_direct(earlier, message("e1")._replace(created_at="2026-01-01T09:00:00.000000Z"),
                        False)
    archive.close_active(owner.tenant_id, owner.session_id, "2026-01-01T09:30:00.000000Z")
    during = replace(owner, id=ids("during"))
    assert archive.save_direct(during, message("o1", 5), False) == (during.id, True)
    archive.save_direct(during, message("both", 6), False)
    closed_owner = replace(owner, status=ConversationStatus.CLOSED,
                           closed_at="2026-01-01T10:05:00.000000Z")
    history = [message("r1", 1), message("both", 6), message("r2", 7)]
    assert archive.store_conversations(
        [(closed_owner, history, summarise_conversation(history, closed_owner.closed_at))]) == []
    assert [m.id for m in archive.messages(owner.id)] == ["r1", "o1", "both", "r2"]
    assert archive.get_conversation(during.id) is None
    assert [m.id for m in archive.messages(earlier.id)] == ["e1"]
