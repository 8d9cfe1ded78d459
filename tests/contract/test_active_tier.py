"""services.ports.ActiveTier (reads of active conversations) and ActiveSnapshot."""
from __future__ import annotations

from dataclasses import replace

from conversation.domain.messages import Role
from conversation.services.ports import Summary
from tests.contract.conftest import conversation, message


def saved(active, ids, name="c", tenant="acme", session="s", count=3):
    c = conversation(ids, name, tenant=tenant, session=session)
    active.save_in_session(c, message(f"{name}-0"), explicit=False, create=True)
    for i in range(1, count):
        active.save_in_session(c, message(f"{name}-{i}", i), explicit=False)
    return c


def test_a_conversation_reads_back_as_saved(active, ids) -> None:
    c = saved(active, ids)
    assert active.get_conversation(c.id) == c
    assert [m.id for m in active.messages(c.id)] == ["c-0", "c-1", "c-2"]
    assert active.message_count(c.id) == 3
    assert active.get_conversation(ids("nothing")) is None
    assert active.messages(ids("nothing")) == []
    assert active.message_count(ids("nothing")) == 0


def test_the_history_comes_with_its_owner_newest_first(active, ids) -> None:
    c = saved(active, ids, count=5)
    owner, history = active.owned_history(c.id, expected=2)
    assert owner == c.tenant_id
    assert history.count() == 5
    assert history.first().id == "c-0"
    newest_first = [r.id for chunk in history.newest_chunks() for r in chunk]
    assert newest_first == ["c-4", "c-3", "c-2", "c-1", "c-0"]
    owner, history = active.owned_history(ids("nothing"))
    assert owner is None and history.count() == 0


def test_costs_stored_in_another_encoding_come_back_with_the_records(active, ids) -> None:
    c = saved(active, ids, count=2)
    _, history = active.owned_history(c.id)
    history.store_counts("letters", {"c-0": 11})
    _, history = active.owned_history(c.id)
    records = {r.id: r for chunk in history.newest_chunks("letters") for r in chunk}
    assert (records["c-0"].other_tokens, records["c-1"].other_tokens) == (11, None)
    assert records["c-0"].tokens == 3 and records["c-0"].role == Role.USER.value
    assert history.first("letters").other_tokens == 11


def test_has_message_tells_the_tenants_own_and_none_when_not_active(active, ids) -> None:
    c = saved(active, ids, count=1)
    assert active.has_message(c.tenant_id, c.id, "c-0") is True
    assert active.has_message(c.tenant_id, c.id, "other") is False
    assert active.has_message(ids("intruder"), c.id, "c-0") is False
    assert active.has_message(c.tenant_id, ids("nothing"), "c-0") is None


def test_the_session_conversation_is_its_tenants_only(active, ids) -> None:
    c = saved(active, ids, count=1)
    assert active.session_conversation(c.tenant_id, c.session_id) == c.id
    assert active.session_conversation(ids("intruder"), c.session_id) is None
    assert active.session_conversation(c.tenant_id, ids("no-session")) is None


def test_a_tenants_active_conversations_by_id(active, ids) -> None:
    b = saved(active, ids, "b", session="s1", count=1)
    a = saved(active, ids, "a", session="s2", count=1)
    saved(active, ids, "x", tenant="other", session="s3", count=1)
    assert [c.id for c in active.active_conversations(a.tenant_id)] == [a.id, b.id]
    assert active.active_conversations(ids("nobody")) == []


def test_a_summary_is_kept_while_the_conversation_is_here(active, ids) -> None:
    c = saved(active, ids, count=2)
    assert active.summary(c.id) is None
    assert active.save_summary(c.id, Summary("so far", "key-1")) is True
    assert active.summary(c.id) == Summary("so far", "key-1")
    assert active.save_summary(ids("nothing"), Summary("x", "y")) is False
    active.finish_migrations([(c, 2)])
    assert active.save_summary(c.id, Summary("late", "key-2")) is False
    assert active.summary(c.id) is None


def test_the_snapshot_counts_every_active_conversation(active, ids) -> None:
    a = saved(active, ids, "a", session="s1", count=2)
    b = saved(active, ids, "b", tenant="other", session="s2", count=1)
    mine = {c.id: n for c, n in active.active_snapshot() if c.id in (a.id, b.id)}
    assert mine == {a.id: 2, b.id: 1}
    active.finish_migrations([(a, 2)])
    assert a.id not in {c.id for c, _ in active.active_snapshot()}


def test_the_conversation_read_back_keeps_the_first_saves_fields(active, ids) -> None:
    c = saved(active, ids, count=1)
    later = replace(c, agent_id="someone-else")
    active.save_in_session(later, message("c-9", 9), explicit=True)
    assert active.get_conversation(c.id).agent_id == "support"
