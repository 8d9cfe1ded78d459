"""`conversation worker` and `conversation beat` with REDIS_CLUSTER=true: both speak to the
broker (beat publishes every scheduled task), and Celery cannot use a cluster node, so both
refuse a broker or result backend that defaulted to REDIS_URL's node, naming the variable."""
from __future__ import annotations

from pathlib import Path

import pytest

from conversation import cli

CLUSTER = {"REDIS_URL": "redis://node-1:7000/0", "REDIS_CLUSTER": "true",
           # Beat's own Redis is a plain one: only the broker is wrong.
           "BEAT_REDIS_URL": "redis://plain-redis:6379/0"}


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(cli, "_celery", lambda *args: calls.append(args))
    # Beat's check of its Redis asks the server; none here.
    monkeypatch.setattr("tasks.beat.check_beat_redis", lambda url: None)
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVERSATION_VAR_DIR", str(tmp_path))
    for name, value in CLUSTER.items():
        monkeypatch.setenv(name, value)
    return calls


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_a_broker_defaulted_to_the_cluster_node_is_refused(started, process: str) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exited:
        cli.main([process])
    assert "CELERY_BROKER_URL" in str(exited.value.code)
    assert started == []


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_a_plain_broker_and_backend_start_at_the_settings_log_level(
        started, process: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest@rabbit//")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://results:6379/2")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    cli.main([process])
    [args] = started
    assert args[0] == process and args[args.index("--loglevel") + 1] == "WARNING"
