"""Each role port has its fake, standalone, and the adapter that plays it: every method the
port names, with its parameters. A method added to a port fails here until the fake and
the adapter have it (then its contract test says whether they agree)."""
from __future__ import annotations

import inspect
from typing import Protocol

import pytest

from conversation.adapters.postgres import SqlRepository
from conversation.adapters.redis import RedisActiveStore
from conversation.services import ports
from tests import fakes

ROLES = [
    (ports.ActiveSaves, fakes.FakeActiveSaves, RedisActiveStore),
    (ports.Arrivals, fakes.FakeArrivals, RedisActiveStore),
    (ports.ActiveTier, fakes.FakeActiveTier, RedisActiveStore),
    (ports.Sessions, fakes.FakeSessions, RedisActiveStore),
    (ports.MigrationQueue, fakes.FakeMigrationQueue, RedisActiveStore),
    (ports.MigrationSource, fakes.FakeMigrationSource, RedisActiveStore),
    (ports.ActiveErasure, fakes.FakeActiveErasure, RedisActiveStore),
    (ports.ActiveSnapshot, fakes.FakeActiveSnapshot, RedisActiveStore),
    (ports.ActiveStore, fakes.FakeActiveStore, RedisActiveStore),
    (ports.ArchiveTier, fakes.FakeArchiveTier, SqlRepository),
    (ports.ArchiveWrites, fakes.FakeArchiveWrites, SqlRepository),
    (ports.ArchiveSaves, fakes.FakeArchiveSaves, SqlRepository),
    (ports.OutageCloses, fakes.FakeOutageCloses, SqlRepository),
    (ports.ArchiveErasure, fakes.FakeArchiveErasure, SqlRepository),
    (ports.Repository, fakes.FakeRepository, SqlRepository),
]


def methods(port: type) -> dict[str, list[str]]:
    """The port's methods (its own and its roles'), each with its parameter names."""
    named: dict[str, list[str]] = {}
    for cls in reversed(port.__mro__):
        if cls in (object, Protocol) or not getattr(cls, "_is_protocol", False):
            continue
        for name, value in vars(cls).items():
            if inspect.isfunction(value) and not name.startswith("_"):
                named[name] = list(inspect.signature(value).parameters)
    return named


# Found by this suite, left for the adapter's owners (adapters are out of its scope): a call
# by the port's keyword (messages=...) fails on PostgreSQL.
MISNAMED = pytest.mark.xfail(strict=True, reason="SqlRepository.store_conversation names the "
                             "port's `messages` parameter `history`")
IMPLEMENTATIONS = [
    pytest.param(port, implementation, id=f"{port.__name__}-{kind}",
                 marks=MISNAMED if kind == "adapter" and implementation is SqlRepository
                 and "store_conversation" in methods(port) else ())
    for port, fake, adapter in ROLES
    for kind, implementation in (("fake", fake), ("adapter", adapter))
]


@pytest.mark.parametrize(("port", "implementation"), IMPLEMENTATIONS)
def test_the_fake_and_the_adapter_play_the_whole_role(port, implementation) -> None:
    expected = methods(port)
    assert expected, f"{port.__name__} names no method"
    found = {name: list(inspect.signature(getattr(implementation, name)).parameters)
             for name in expected if hasattr(implementation, name)}
    assert found == expected


def test_every_role_a_store_plays_is_checked() -> None:
    """A port added to the stores' modules needs its fake (and a line above)."""
    from conversation.services.ports import (
        archive, arrivals, conversations, migration, retention, sessions)

    # Not a store's role: what a history or a listener is, unions of roles, the broker's.
    others = {ports.History, ports.ArrivalListener, ports.TierStore, ports.ActiveReads,
              ports.Announcements, ports.QueuedDeadLetters}
    declared = {value for module in (archive, arrivals, conversations, migration, retention,
                                     sessions)
                for value in vars(module).values()
                if isinstance(value, type) and getattr(value, "_is_protocol", False)
                and value.__module__ == module.__name__}
    assert declared - others <= {port for port, _, _ in ROLES}
