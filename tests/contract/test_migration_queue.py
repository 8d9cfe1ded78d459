"""services.ports.MigrationQueue: what is due (closed sessions, ready marks, idle
conversations) and the quarantine the sweeps skip."""
from __future__ import annotations

import time

from tests.contract.conftest import conversation, message


def started(active, ids, name, session):
    c = conversation(ids, name, session=session)
    active.save_in_session(c, message(f"{name}-1"), explicit=False, create=True)
    return c


def test_closed_sessions_come_oldest_first_up_to_the_moment(active, ids) -> None:
    sessions = []
    for i, epoch in enumerate(["1767261620.000000", "1767261600.000000", "1767261610.000000"]):
        c = started(active, ids, f"c{i}", f"s{i}")
        at = f"2026-01-01T10:00:{int(float(epoch)) % 60:02d}.000000Z"
        active.close_sessions_into_timers(
            [(c.tenant_id, c.session_id, at, epoch, 1767261700)], 3600)
        sessions.append(c.session_id)
    mine = set(sessions)
    due = [s for s in active.closed_sessions_before(1767261615.0, 100) if s in mine]
    assert due == [sessions[1], sessions[2]]
    assert [s for s in active.closed_sessions_before(1767261700.0, 100) if s in mine] == [
        sessions[1], sessions[2], sessions[0]]
    active.forget_closed_session(sessions[1])
    assert [s for s in active.closed_sessions_before(1767261700.0, 100) if s in mine] == [
        sessions[2], sessions[0]]
    states = active.session_states([sessions[0], "nobody-" + sessions[0]])
    assert (states[0].generation, states[0].closed_at is not None, states[1]) == (1, True, None)


def test_ready_marks_come_in_order_and_are_forgotten(active, ids) -> None:
    a, b, c = ids("a"), ids("b"), ids("c")
    active.mark_ready_many([(b, 2), (a, 1), (c, 4)])
    assert active.ready_migrations(2) == [(a, 1), (b, 2)]  # marked together: by member
    active.forget_ready([(a, 1), (c, 4)])
    assert active.ready_migrations(10) == [(b, 2)]
    active.forget_ready([(b, 2)])
    assert active.ready_migrations(10) == []


def test_idle_conversations_are_those_saved_to_before_the_moment(active, ids) -> None:
    c = started(active, ids, "c", "s")
    assert c.id not in active.idle_conversations(time.time() - 3600, 100)
    assert c.id in active.idle_conversations(time.time() + 60, 100)
    active.forget_activity(c.id)
    assert c.id not in active.idle_conversations(time.time() + 60, 100)


def test_a_quarantined_conversation_is_flagged_until_released(active, ids) -> None:
    a, b = started(active, ids, "a", "s1"), started(active, ids, "b", "s2")
    active.quarantine(a.id, "does not decode")
    assert active.quarantined([a.id, b.id]) == [True, False]
    assert active.quarantined([]) == []
    assert active.release_quarantine(a.id) is True
    assert active.release_quarantine(a.id) is False  # two replays release once
    assert active.quarantined([a.id]) == [False]
