"""Integration fixtures: the service wired to the run's real Redis and PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from config.settings import Settings
from conversation.adapters.postgres.schema import conversations, messages
from conversation.bootstrap import Container


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    container = Container(settings)
    yield container
    container.close()


def forget_tenant_rows(container: Container, tenant_id: str = "acme") -> None:
    """The shared service tests (tests/unit/test_services.py) reuse tenant "acme"'s session
    and message ids on every store they run on, and a message id is stored once per tenant
    and session whichever conversation holds it: each starts without what an earlier one
    left in the run's database."""
    with container.engine.begin() as connection:
        connection.execute(delete(messages).where(messages.c.tenant_id == tenant_id))
        connection.execute(delete(conversations).where(conversations.c.tenant_id == tenant_id))
