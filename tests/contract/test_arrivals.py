"""services.ports.Arrivals: a waiter hears a save of its message (in the active tier, or
announced for one stored in the archive), and nothing else."""
from __future__ import annotations

from tests.contract.conftest import conversation, message

# Long enough for a real server's round trip; the waits below that end early end on data.
WAIT = 2.0
NOTHING = 0.05


def test_a_save_into_the_active_tier_wakes_its_waiter(active, ids) -> None:
    c = conversation(ids)
    listener = active.listen_for(c.tenant_id, "m1")
    try:
        active.save_in_session(c, message("m1"), explicit=False, create=True)
        assert listener.wait(WAIT) is True
    finally:
        listener.close()


def test_an_announcement_wakes_the_waiter_of_that_tenants_message_only(active, ids) -> None:
    tenant = ids("acme")
    mine = active.listen_for(tenant, "m1")
    other_tenant = active.listen_for(ids("other"), "m1")
    other_message = active.listen_for(tenant, "m2")
    try:
        active.announce_saved(tenant, ["m1"])
        assert mine.wait(WAIT) is True
        assert other_tenant.wait(NOTHING) is False
        assert other_message.wait(NOTHING) is False
    finally:
        for listener in (mine, other_tenant, other_message):
            listener.close()


def test_a_duplicate_save_announces_nothing(active, ids) -> None:
    c = conversation(ids)
    active.save_in_session(c, message("m1"), explicit=False, create=True)
    listener = active.listen_for(c.tenant_id, "m1")
    try:
        active.save_in_session(c, message("m1"), explicit=False)
        assert listener.wait(NOTHING) is False
    finally:
        listener.close()
