"""The contract suites: one per port, each test run on every implementation of it. The
in-memory fake (tests/fakes), the Redis adapter on fakeredis (standalone, its Redis
Cluster paths, and behind the circuit breaker as bootstrap wires it), the Redis adapter on a real Redis, the PostgreSQL adapter on a real
PostgreSQL (the run's embedded servers, tests/conftest.py; marked `integration`).

A new store implements the role ports and joins the parameters here: every suite then holds
it to what the services rely on. Tests name their own tenants, sessions and conversations
(`ids`), so the real servers' shared database and Redis need no cleaning between them."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis

from conversation.adapters.outage import CircuitBreaker, GuardedActiveStore
from conversation.adapters.postgres import SqlRepository, make_engine
from conversation.adapters.redis import RedisActiveStore
from conversation.domain.messages import Conversation, Message, Role
from tests.fakes import FakeActiveStore, FakeRepository

ACTIVE = [
    "fake",
    "fakeredis",
    "fakeredis-cluster-paths",
    "fakeredis-guarded",
    pytest.param("redis", marks=pytest.mark.integration),
]
ARCHIVE = ["fake", pytest.param("postgres", marks=pytest.mark.integration)]


@pytest.fixture(params=ACTIVE)
def active(request: pytest.FixtureRequest, ids: Callable[[str], str]) -> Iterator[object]:
    """The active tier (services.ports.ActiveStore and its roles)."""
    if request.param == "fake":
        yield FakeActiveStore()
        return
    if request.param == "redis":
        client = redis.Redis.from_url(f"{request.getfixturevalue('redis_server')}/0")
    else:
        client = fakeredis.FakeRedis()
    store = RedisActiveStore(client, prefix=ids("contract") + ":")
    # Redis Cluster runs the session and conversation steps of a save apart, and closes
    # before their timers: the same contract either way.
    store.cluster = request.param == "fakeredis-cluster-paths"
    yield GuardedActiveStore(store, CircuitBreaker()) if request.param.endswith("guarded") else store
    client.close()


@pytest.fixture(params=ARCHIVE)
def archive(request: pytest.FixtureRequest) -> Iterator[object]:
    """The archive (services.ports.Repository and its roles)."""
    if request.param == "fake":
        yield FakeRepository()
        return
    engine = make_engine(request.getfixturevalue("database_url"), pool_size=1)
    yield SqlRepository(engine)
    engine.dispose()


@pytest.fixture
def ids() -> Callable[[str], str]:
    """Identifiers of this test's own: `ids("s")` -> "s-<run>" (no ':', the contract's rule)."""
    run = uuid.uuid4().hex[:10]
    return lambda name: f"{name}-{run}"


def corrupt(active: object, conversation_id: str) -> None:
    """Leave data that does not decode in the conversation (what a migration must refuse)."""
    if isinstance(active, (RedisActiveStore, GuardedActiveStore)):
        active.client.rpush(active.keys.messages(conversation_id), b"{not json")
    else:
        active.undecodable.add(conversation_id)  # type: ignore[attr-defined]


def conversation(ids: Callable[[str], str], name: str = "c", *, tenant: str = "acme",
                 session: str = "s", at: str = "2026-01-01T10:00:00.000000Z") -> Conversation:
    return Conversation(id=ids(name), tenant_id=ids(tenant), session_id=ids(session),
                        agent_id="support", created_at=at)


def message(message_id: str, second: int = 0, content: str | None = None,
            role: Role = Role.USER) -> Message:
    """A message at 10:00:<second> on the first of January 2026."""
    return Message(id=message_id, role=role, content=content or message_id,
                   created_at=f"2026-01-01T10:00:{second:02d}.000000Z", tokens=3,
                   encoding="words")
