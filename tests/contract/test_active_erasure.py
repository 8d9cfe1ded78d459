"""services.ports.ActiveErasure: every trace of a conversation, or of a tenant's sessions."""
from __future__ import annotations

import time

from conversation.services.ports import AppendResult, Summary
from tests.contract.conftest import conversation, message


def started(active, ids, name="c", session="s", tenant="acme"):
    c = conversation(ids, name, session=session, tenant=tenant)
    active.save_in_session(c, message(f"{name}-1"), explicit=False, create=True)
    return c


def test_an_erased_conversation_leaves_nothing(active, ids) -> None:
    c = started(active, ids)
    active.save_summary(c.id, Summary("s", "k"))
    active.close_session(c.tenant_id, c.session_id, "2026-01-01T10:00:30.000000Z")
    active.mark_ready_many([(c.id, 1)])
    active.quarantine(c.id, "why")
    assert active.erase_conversation(c.id) is True
    assert active.get_conversation(c.id) is None
    assert active.messages(c.id) == [] and active.summary(c.id) is None
    assert active.active_conversations(c.tenant_id) == []
    assert c.id not in dict(active.ready_migrations(10_000))
    assert active.quarantined([c.id]) == [False]
    assert c.id not in active.idle_conversations(time.time() + 60, 10_000)
    # Its session's records went with it: the session starts afresh.
    assert active.session_state(c.session_id) is None
    assert c.session_id not in active.closed_sessions_before(2e9, 10_000)
    assert active.erase_conversation(c.id) is False


def test_a_migrated_conversations_marker_is_erased_too(active, ids) -> None:
    c = started(active, ids)
    active.finish_migrations([(c, 1)])
    assert active.erase_conversation(c.id) is True
    # No marker left: a save naming it no longer answers MOVED, but as for an id never used.
    assert active.save_in_session(c, message("again", 5), explicit=True) == (
        AppendResult.NOT_FOUND, c.id)


def test_a_session_moved_on_keeps_its_records(active, ids) -> None:
    c = started(active, ids)
    active.finish_migrations([(c, 1)])
    active.release_sessions([(c.session_id, c.id, 0)])
    following = started(active, ids, "next")
    active.erase_conversation(c.id)
    assert active.session_conversation(c.tenant_id, c.session_id) == following.id


def test_a_tenants_sessions_are_forgotten_and_counted(active, ids) -> None:
    started(active, ids, "a", "s1")
    started(active, ids, "b", "s2")
    other = started(active, ids, "x", "s3", tenant="other")
    assert active.erase_tenant_sessions(ids("acme")) == 2
    assert active.session_state(ids("s1")) is None
    assert active.session_conversation(other.tenant_id, other.session_id) == other.id
    assert active.erase_tenant_sessions(ids("acme")) == 0
