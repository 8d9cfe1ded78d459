"""services.ports.ActiveSaves: the save path's writes to the active tier."""
from __future__ import annotations

from dataclasses import replace

import pytest

from conversation.domain.errors import ForeignSession
from conversation.services.ports import AppendResult
from tests.contract.conftest import conversation, message

SAVED, DUPLICATE = AppendResult.SAVED, AppendResult.DUPLICATE


def test_a_new_session_is_confirmed_before_anything_is_written(active, ids) -> None:
    c = conversation(ids)
    assert active.save_many_in_session([(c, message("m1"), False, False)]) == [
        (AppendResult.NEW_CONVERSATION, "")]
    assert active.get_conversation(c.id) is None
    assert active.session_conversation(c.tenant_id, c.session_id) is None

    assert active.save_in_session(c, message("m1"), explicit=False, create=True) == (SAVED, c.id)
    assert active.session_conversation(c.tenant_id, c.session_id) == c.id


def test_a_candidate_id_is_used_only_while_the_session_has_no_conversation(active, ids) -> None:
    c = conversation(ids)
    active.save_in_session(c, message("m1"), explicit=False, create=True)
    other = replace(c, id=ids("other"))
    assert active.save_in_session(other, message("m2", 1), explicit=False) == (SAVED, c.id)
    assert [m.id for m in active.messages(c.id)] == ["m1", "m2"]
    assert active.get_conversation(other.id) is None


def test_a_message_id_is_stored_once(active, ids) -> None:
    c = conversation(ids)
    active.save_in_session(c, message("m1"), explicit=False, create=True)
    again = message("m1", 5, content="changed")
    assert active.save_in_session(c, again, explicit=False) == (DUPLICATE, c.id)
    assert [(m.id, m.content) for m in active.messages(c.id)] == [("m1", "m1")]


def test_messages_are_ordered_by_created_at_then_arrival(active, ids) -> None:
    c = conversation(ids)
    active.save_in_session(c, message("a", 10), explicit=False, create=True)
    for item in (message("c", 30), message("b", 20), message("z", 1), message("b2", 20)):
        active.save_in_session(c, item, explicit=False)
    assert [m.id for m in active.messages(c.id)] == ["z", "a", "b", "b2", "c"]


def test_another_tenants_session_is_refused_in_its_place(active, ids) -> None:
    c = conversation(ids)
    active.save_in_session(c, message("m1"), explicit=False, create=True)
    intruder = replace(c, tenant_id=ids("intruder"), id=ids("intruder-c"))
    mine = conversation(ids, "c2", session="s2")
    results = active.save_many_in_session([(intruder, message("x"), False, True),
                                           (mine, message("m2"), False, True)])
    assert isinstance(results[0], ForeignSession)
    assert results[1] == (SAVED, mine.id)
    with pytest.raises(ForeignSession):
        active.save_in_session(intruder, message("x"), explicit=False, create=True)
    assert [m.id for m in active.messages(c.id)] == ["m1"]


def test_an_explicit_conversation_not_active_is_created_only_when_asked(active, ids) -> None:
    first = conversation(ids)
    active.save_in_session(first, message("m1"), explicit=False, create=True)
    named = conversation(ids, "named")
    assert active.save_in_session(named, message("m2"), explicit=True) == (
        AppendResult.NOT_FOUND, named.id)
    assert active.get_conversation(named.id) is None
    assert active.save_in_session(named, message("m2"), explicit=True, create=True) == (
        SAVED, named.id)
    assert [m.id for m in active.messages(named.id)] == ["m2"]
    # The session keeps the conversation it had.
    assert active.session_conversation(first.tenant_id, first.session_id) == first.id


def test_an_explicit_conversation_becomes_the_sessions_when_it_has_none(active, ids) -> None:
    named = conversation(ids, "named")
    assert active.save_in_session(named, message("m1"), explicit=True, create=True) == (
        SAVED, named.id)
    assert active.session_conversation(named.tenant_id, named.session_id) == named.id


def test_a_migrated_conversation_answers_moved_and_foreign_for_another_tenant(active, ids) -> None:
    c = conversation(ids)
    active.save_in_session(c, message("m1"), explicit=False, create=True)
    assert active.finish_migrations([(c, 1)]) == [True]
    assert active.save_in_session(c, message("m2", 1), explicit=True) == (AppendResult.MOVED, c.id)
    stranger = replace(c, tenant_id=ids("stranger"), session_id=ids("s-stranger"))
    active.save_in_session(conversation(ids, "own", tenant="stranger", session="s-stranger"),
                           message("own"), explicit=False, create=True)
    assert active.save_in_session(stranger, message("m3"), explicit=True) == (
        AppendResult.FOREIGN, c.id)
    assert active.get_conversation(c.id) is None


def test_a_message_written_after_the_close_reopens_the_session(active, ids) -> None:
    c = conversation(ids)
    active.save_in_session(c, message("m1", 1), explicit=False, create=True)
    closed = active.close_session(c.tenant_id, c.session_id, "2026-01-01T10:00:05.000000Z")
    # A late delivery (written before the close) leaves it closed, at the close's generation.
    active.save_in_session(c, message("late", 3), explicit=False)
    state = active.session_state(c.session_id)
    assert (state.generation, state.closed_at) == (closed.generation,
                                                   "2026-01-01T10:00:05.000000Z")
    active.save_in_session(c, message("after", 9), explicit=False)
    state = active.session_state(c.session_id)
    assert (state.generation, state.closed_at) == (closed.generation + 1, None)
    assert [m.id for m in active.messages(c.id)] == ["m1", "late", "after"]
