"""The service tests of tests/unit/test_services.py, on real Redis and real PostgreSQL."""
from __future__ import annotations

import pytest

from conversation.adapters.redis import RedisActiveStore
from conversation.adapters.postgres import SqlRepository
from conversation.bootstrap import Container
from tests.integration.conftest import forget_tenant_rows
from tests.unit.test_services import *  # noqa: F403  (the same tests, other fixtures)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["one_round_trip", "cluster_two_steps"])
def active(container: Container, request: pytest.FixtureRequest) -> RedisActiveStore:
    store = container.active_store
    store.cluster = request.param == "cluster_two_steps"
    return store


@pytest.fixture
def repository(container: Container) -> SqlRepository:
    forget_tenant_rows(container)
    return container.repository


def test_a_broken_context_answers_empty_with_a_warning(container, caplog) -> None:  # noqa: ANN001
    """The contract: a context failure never fails the caller."""
    import logging

    from conversation.domain.messages import NewMessage, Role

    outcome = container.saver.save(NewMessage(
        tenant_id="acme", session_id="broken", agent_id="bot", role=Role.USER,
        content="hello", message_id="m1"))
    # Corrupt the stored history, as a bad deploy or a manual edit might.
    container.redis.rpush(container.active_store.keys.messages(outcome.conversation_id),
                          b"{not json")
    with caplog.at_level(logging.WARNING):
        context = container.context_builder.get_context(
            tenant_id="acme", conversation_id=outcome.conversation_id, window="8k")
    assert context["messages"] == [] and context["tokens"] == 0
    assert context["error"]
    assert any("context failed" in r.getMessage() for r in caplog.records)


def test_saving_survives_a_lost_script_cache(container) -> None:  # noqa: ANN001
    """A Redis restart or SCRIPT FLUSH empties the script cache: the store reloads and goes on."""
    from conversation.domain.messages import NewMessage, Role

    def say(text: str):  # noqa: ANN202
        return container.saver.save(NewMessage(
            tenant_id="acme", session_id="flush", agent_id="bot", role=Role.USER,
            content=text, message_id=text))

    first = say("before")
    container.redis.script_flush()
    second = say("after")
    assert second.conversation_id == first.conversation_id and second.stored
    assert [m.content for m in container.active_store.messages(first.conversation_id)] == [
        "before", "after"]
