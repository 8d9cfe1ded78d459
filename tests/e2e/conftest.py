"""End-to-end fixtures: the same settings on each broker."""
from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import replace

import pytest

from config.settings import Settings


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_settings(request: pytest.FixtureRequest, settings: Settings):  # noqa: ANN201
    """The same settings on each broker: Redis (the embedded one) and RabbitMQ, in a virtual
    host of the test's own, when a RabbitMQ server runs here (127.0.0.1:5672)."""
    # Unacknowledged tasks of a dead worker come back after the visibility timeout (Redis):
    # short here.
    settings = replace(settings, broker_visibility_timeout=3)
    if request.param == "redis":
        yield settings
        return
    vhost = f"conversation_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if not _rabbitmq(["add_vhost", vhost]):
        pytest.skip("no RabbitMQ server (127.0.0.1:5672) with rabbitmqctl on this machine")
    try:
        _rabbitmq(["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])
        yield replace(settings, broker_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    finally:
        _rabbitmq(["delete_vhost", vhost])


def _rabbitmq(args: list[str]) -> bool:
    try:
        return subprocess.run(["rabbitmqctl", *args], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
