"""services.ports.MigrationSource: what the migrator loads, and clears only when nothing
came in meanwhile."""
from __future__ import annotations

import pytest

from conversation.services.ports import AppendResult, ConversationRefused, Summary
from tests.contract.conftest import conversation, corrupt, message


def closed(active, ids, name="c", session="s", count=2):
    c = conversation(ids, name, session=session)
    active.save_in_session(c, message(f"{name}-0", 0), explicit=False, create=True)
    for i in range(1, count):
        active.save_in_session(c, message(f"{name}-{i}", i), explicit=False)
    result = active.close_session(c.tenant_id, c.session_id, "2026-01-01T10:00:30.000000Z")
    return c, result.generation


def test_a_load_holds_everything_the_archive_needs(active, ids) -> None:
    c, generation = closed(active, ids)
    active.save_summary(c.id, Summary("so far", "k"))
    _, history = active.owned_history(c.id)
    history.store_counts("letters", {"c-1": 7})
    load, missing = active.load_for_migration([c.id, ids("nothing")])
    assert missing is None
    assert load.conversation == c
    assert [m.id for m in load.messages] == ["c-0", "c-1"]
    assert load.summary == Summary("so far", "k")
    assert load.token_counts == {"letters": {"c-1": 7}}
    assert (load.session.tenant_id, load.session.conversation_id, load.session.generation,
            load.session.closed_at) == (c.tenant_id, c.id, generation,
                                        "2026-01-01T10:00:30.000000Z")
    assert active.message_counts([c.id, ids("nothing")]) == [2, 0]


def test_a_finish_removes_only_what_still_holds_the_count_read(active, ids) -> None:
    a, _ = closed(active, ids, "a", "s1")
    b, _ = closed(active, ids, "b", "s2")
    active.save_in_session(b, message("b-late", 9), explicit=False)  # after the load
    assert active.finish_migrations([(a, 2), (b, 2)]) == [True, False]
    assert active.get_conversation(a.id) is None and active.messages(a.id) == []
    assert active.load_for_migration([a.id]) == [None]
    assert a.id not in [c.id for c in active.active_conversations(a.tenant_id)]
    assert [m.id for m in active.messages(b.id)] == ["b-0", "b-1", "b-late"]
    # What comes for the migrated one is the archive's now.
    assert active.save_in_session(a, message("a-9", 9), explicit=True) == (
        AppendResult.MOVED, a.id)


def test_a_finish_clears_the_quarantine_mark(active, ids) -> None:
    c, _ = closed(active, ids)
    active.quarantine(c.id, "refused")
    active.finish_migrations([(c, 2)])
    assert active.quarantined([c.id]) == [False]


def test_a_session_is_released_only_at_the_generation_migrated(active, ids) -> None:
    a, generation = closed(active, ids, "a", "s1")
    b, stale = closed(active, ids, "b", "s2")
    active.open_session(b.tenant_id, b.session_id)  # reopened after the load
    assert active.release_sessions([(a.session_id, a.id, generation),
                                    (b.session_id, b.id, stale)]) == [True, False]
    assert active.release_sessions([]) == []
    assert active.session_conversation(a.tenant_id, a.session_id) is None
    assert active.session_conversation(b.tenant_id, b.session_id) == b.id
    assert a.session_id not in active.closed_sessions_before(2e9, 10_000)
    # Released, the session still belongs to its tenant: its next message asks to confirm.
    fresh = conversation(ids, "fresh", session="s1")
    assert active.save_in_session(fresh, message("n", 40), explicit=False) == (
        AppendResult.NEW_CONVERSATION, "")


def test_a_conversation_that_does_not_decode_is_refused_whole(active, ids) -> None:
    good, _ = closed(active, ids, "good", "s1")
    bad, _ = closed(active, ids, "bad", "s2")
    corrupt(active, bad.id)
    with pytest.raises(ConversationRefused):
        active.load_for_migration([good.id, bad.id])
    [load] = active.load_for_migration([good.id])
    assert [m.id for m in load.messages] == ["good-0", "good-1"]
