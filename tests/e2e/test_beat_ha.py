"""Beat high availability (celery-redbeat): two beat processes, one schedules; kill it with
SIGKILL (no lock released) and the other takes over."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from config.settings import PROJECT_ROOT, Settings
from conversation.embedded import EmbeddedRedis
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


def test_beat_rides_out_an_outage_of_its_redis(settings: Settings, test_var_dir: Path) -> None:
    """Its Redis stopped for longer than the lock lives, then back empty (no persistence):
    the beat process stays up, takes the lock again, re-installs its schedule and sends."""
    own = EmbeddedRedis(test_var_dir / "beat-outage-redis", persist=False).start()
    settings = replace(settings, beat_interval_seconds=1, beat_lock_seconds=3,
                       beat_redis_url=f"{own.url}/0")
    broker = redis.Redis.from_url(settings.broker_url)
    log = test_var_dir / f"beat-outage-{settings.redis_key_prefix.strip(':')}.log"
    beat = start_beat(settings, log)
    try:
        wait_until(lambda: SENDING in log.read_text(), what="beat to send")
        own.stop()
        wait_until(lambda: "Redis is unreachable" in log.read_text(), timeout=20,
                   what="beat to notice the outage")
        time.sleep(settings.beat_lock_seconds + 1)  # the lock would have expired meanwhile
        assert beat.poll() is None, log.read_text()[-3000:]
        own.start()  # same port, empty
        sent_before = broker.llen("conversation.stats")
        wait_until(lambda: broker.llen("conversation.stats") >= sent_before + 3, timeout=30,
                   what="beat to send again once its Redis is back")
        text = log.read_text()
        assert text.count(LOCKED) == 2  # at start, and again after the outage
        assert "Redis is back" in text
        assert beat.poll() is None
        client = redis.Redis.from_url(own.url)
        assert client.exists(f"{settings.redis_key_prefix}redbeat::lock")
        client.close()
    finally:
        stop(beat)
        broker.close()
        own.stop()


def test_beat_refuses_to_start_without_a_plain_redis(settings: Settings, test_var_dir: Path) -> None:
    env = settings_env(replace(settings, broker_url="amqp://guest:guest@127.0.0.1:5672//",
                               result_backend="rpc://"))
    done = subprocess.run([sys.executable, "-m", "conversation.cli", "beat"], check=False,
                          cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode != 0
    assert b"set BEAT_REDIS_URL" in done.stderr
