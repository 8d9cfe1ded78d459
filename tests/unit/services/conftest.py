"""The services on the in-memory fakes (tests/fakes): one file per service, no server and no
fakeredis. tests/contract holds the fakes to what the adapters do."""
from __future__ import annotations

from typing import Any

import pytest

from conversation.domain.messages import NewMessage, Role
from tests.fakes import FakeActiveStore, FakeRepository


@pytest.fixture
def active() -> FakeActiveStore:
    return FakeActiveStore()


@pytest.fixture
def archive() -> FakeRepository:
    return FakeRepository()


def command(content: str = "hello there", **overrides: Any) -> NewMessage:
    """A message of tenant acme's session s-1; its id is its content, dashed."""
    values: dict[str, Any] = {
        "tenant_id": "acme", "session_id": "s-1", "agent_id": "support", "role": Role.USER,
        "content": content, "message_id": content.replace(" ", "-"),
    }
    values.update(overrides)
    return NewMessage(**values)
