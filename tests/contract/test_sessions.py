"""services.ports.Sessions: closes into the shared close timers, reopens, generations."""
from __future__ import annotations

import pytest

from conversation.domain.errors import ForeignSession
from conversation.services.ports import ClosedSession
from tests.contract.conftest import conversation, message

KEEP = 3600
SECOND = 1_767_261_605  # the second a grace ends in (epoch)


def started(active, ids, name="c", session="s", tenant="acme"):
    c = conversation(ids, name, session=session, tenant=tenant)
    active.save_in_session(c, message(f"{name}-1"), explicit=False, create=True)
    return c


def close(c, epoch="1767261600.000000", second=SECOND, at="2026-01-01T10:00:00.000000Z"):
    return (c.tenant_id, c.session_id, at, epoch, second)


def test_a_close_bumps_the_generation_and_joins_its_seconds_bucket(active, ids) -> None:
    a, b = started(active, ids, "a", "s1"), started(active, ids, "b", "s2")
    results, armed = active.close_sessions_into_timers([close(a), close(b)], KEEP)
    assert results == [ClosedSession(a.id, 1), ClosedSession(b.id, 1)]
    assert armed == [SECOND]  # one timer for the second, armed by its first close
    state = active.session_state(a.session_id)
    assert (state.conversation_id, state.generation, state.closed_at) == (
        a.id, 1, "2026-01-01T10:00:00.000000Z")
    assert active.take_close_timer(SECOND) == sorted(
        [f"{a.id}:1:1767261600.000000", f"{b.id}:1:1767261600.000000"])


def test_a_timer_stays_armed_until_taken(active, ids) -> None:
    a, b = started(active, ids, "a", "s1"), started(active, ids, "b", "s2")
    assert active.close_sessions_into_timers([close(a)], KEEP)[1] == [SECOND]
    assert active.close_sessions_into_timers([close(b)], KEEP)[1] == []
    assert len(active.take_close_timer(SECOND)) == 2
    # Taken: the bucket stays until its members are handed on; the next close arms again.
    assert active.arm_close_timers({SECOND: []}, KEEP) == [SECOND]
    assert active.arm_close_timers({SECOND: ["x:1:1.0"], SECOND + 1: []}, KEEP) == [SECOND + 1]
    assert "x:1:1.0" in active.take_close_timer(SECOND)


def test_members_handed_on_leave_the_bucket(active, ids) -> None:
    a, b = started(active, ids, "a", "s1"), started(active, ids, "b", "s2")
    active.close_sessions_into_timers([close(a), close(b)], KEEP)
    members = active.take_close_timer(SECOND)
    active.forget_close_timer_members(SECOND, members[:1])
    assert active.take_close_timer(SECOND) == members[1:]


def test_a_session_without_a_conversation_closes_to_nothing(active, ids) -> None:
    c = conversation(ids)
    results, armed = active.close_sessions_into_timers([close(c)], KEEP)
    assert (results, armed) == ([None], [])
    assert active.take_close_timer(SECOND) == []


def test_another_tenants_session_is_refused_in_its_place(active, ids) -> None:
    a = started(active, ids, "a", "s1")
    b = started(active, ids, "b", "s2")
    intruder = (ids("intruder"), a.session_id, "2026-01-01T10:00:00.000000Z",
                "1767261600.000000", SECOND)
    results, _ = active.close_sessions_into_timers([intruder, close(b)], KEEP)
    assert isinstance(results[0], ForeignSession)
    assert results[1] == ClosedSession(b.id, 1)
    assert active.session_state(a.session_id).closed_at is None
    with pytest.raises(ForeignSession):
        active.open_session(ids("intruder"), a.session_id)


def test_a_reopen_cancels_the_close(active, ids) -> None:
    c = started(active, ids)
    assert active.open_session(c.tenant_id, c.session_id) is False  # not closed
    active.close_sessions_into_timers([close(c)], KEEP)
    assert active.open_session(c.tenant_id, c.session_id) is True
    state = active.session_state(c.session_id)
    assert (state.generation, state.closed_at) == (2, None)
    assert active.open_session(c.tenant_id, ids("never-used")) is False


def test_closing_again_gives_a_new_generation(active, ids) -> None:
    c = started(active, ids)
    first = active.close_sessions_into_timers([close(c)], KEEP)[0][0]
    again = active.close_sessions_into_timers([close(c, second=SECOND + 1)], KEEP)[0][0]
    assert (first.generation, again.generation) == (1, 2)
