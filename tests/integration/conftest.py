"""Integration fixtures: the service wired to the run's real Redis and PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.settings import Settings
from conversation.bootstrap import Container


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    container = Container(settings)
    yield container
    container.close()
