"""Beat high availability (celery-redbeat): two beat processes, one schedules; kill it with
SIGKILL (no lock released) and the other takes over."""
from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from config.settings import PROJECT_ROOT, Settings
from tests.workers import settings_env, stop, wait_until

pytestmark = pytest.mark.e2e

SENDING = "Sending due task"
LOCKED = "beat: Acquired lock"


def start_beat(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "conversation.cli", "beat", "--loglevel", "INFO"],
            cwd=PROJECT_ROOT, env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT,
        )


def test_two_beats_one_schedules_and_the_other_takes_over(
    settings: Settings, test_var_dir: Path
) -> None:
    settings = replace(settings, beat_interval_seconds=1, beat_lock_seconds=3)
    broker = redis.Redis.from_url(settings.broker_url)
    logs = [test_var_dir / f"beat-{name}-{settings.redis_key_prefix.strip(':')}.log"
            for name in ("a", "b")]
    first = start_beat(settings, logs[0])
    second = None
    try:
        wait_until(lambda: SENDING in logs[0].read_text(), what="the first beat to send")
        second = start_beat(settings, logs[1])
        sent_before = broker.llen("conversation.stats")
        # Both run for a while: the stats queue keeps filling, from the first beat only.
        wait_until(lambda: broker.llen("conversation.stats") >= sent_before + 8,
                   what="more scheduled tasks")
        second_log = logs[1].read_text()
        assert "beat: Starting" in second_log  # it is up, and waits for the lock
        assert LOCKED not in second_log and SENDING not in second_log

        first.send_signal(signal.SIGKILL)  # dies holding the lock
        first.wait(timeout=10)
        wait_until(lambda: LOCKED in logs[1].read_text(), timeout=30,
                   what="the second beat to take the lock")
        wait_until(lambda: SENDING in logs[1].read_text(), timeout=10,
                   what="the second beat to send")
        bodies = [broker.lindex("conversation.stats", i) for i in range(-4, 0)]
        assert any(b"conversation.aggregate_stats" in body for body in bodies if body)
    finally:
        stop(first)
        if second is not None:
            stop(second)
        broker.close()
