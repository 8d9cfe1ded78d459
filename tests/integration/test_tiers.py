"""The service tests of tests/unit/test_services.py, on real Redis and real PostgreSQL."""
from __future__ import annotations

import pytest

from conversation.adapters.redis_store import RedisActiveStore
from conversation.adapters.sql_repository import SqlRepository
from conversation.bootstrap import Container
from tests.unit.test_services import *  # noqa: F403  (the same tests, other fixtures)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["one_round_trip", "cluster_two_steps"])
def active(container: Container, request: pytest.FixtureRequest) -> RedisActiveStore:
    store = container.active_store
    store.cluster = request.param == "cluster_two_steps"
    return store


@pytest.fixture
def repository(container: Container) -> SqlRepository:
    return container.repository
