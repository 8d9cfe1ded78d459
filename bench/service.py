"""The service as `make run` runs it, for the benchmarks: `conversation run` itself (embedded
Redis and PostgreSQL unless URLs are set, its worker, beat, API and Flower, its pools, log
level and task events), and an anchor worker of Celery's own beside it on the same Redis."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from config.settings import EMBEDDED_ENDPOINTS_FILE, PROJECT_ROOT, Settings
from conversation.embedded import free_port

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
# With FLOWER_TASK_EVENTS=true, Flower switches task events on in the workers it watches, a
# few seconds after it starts: the bench waits for that, so the figures are those of the
# service as configured (off by default: config/celery.py says why).
EVENTS_TIMEOUT = 30.0


class ServiceRun:
    """`conversation run --grace 0` under var/bench/ (the grace is excluded from every figure:
    a close's row measures the work, not the wait), its output in var/bench-service.log."""

    def __init__(self, grace: int = 0) -> None:
        self.root = PROJECT_ROOT / "var" / "bench"
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.log_path = PROJECT_ROOT / "var" / "bench-service.log"
        env = dict(os.environ)
        env.update({
            "CONVERSATION_VAR_DIR": str(self.root),
            "API_PORT": str(free_port()),
            "FLOWER_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        })
        self.env = env
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "conversation.cli", "run", "--grace", str(grace)],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.service = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> Settings:
        deadline = time.monotonic() + START_TIMEOUT
        endpoints = self.root / EMBEDDED_ENDPOINTS_FILE
        while not endpoints.exists() or not self._running_line():
            self._check_alive(deadline)
            time.sleep(0.2)
        settings = Settings.from_env({**self.env, **json.loads(endpoints.read_text())})
        from tests.workers import producer

        app = producer(settings)
        try:
            while not app.control.ping(timeout=0.5):
                self._check_alive(deadline)
        finally:
            app.close()
        events_by = time.monotonic() + EVENTS_TIMEOUT
        while settings.flower_task_events and b"enabled by remote" not in self.log_path.read_bytes():
            if time.monotonic() > events_by:
                print("  (Flower did not switch task events on: measured without them)",
                      file=sys.stderr)
                break
            self._check_alive(deadline + EVENTS_TIMEOUT)
            time.sleep(0.2)
        return settings

    def _running_line(self) -> bool:
        return b"running; Ctrl-C stops everything" in self.log_path.read_bytes()

    def _check_alive(self, deadline: float) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"`conversation run` exited:\n{self.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"`conversation run` not ready in time:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def settings(self, **overrides: object) -> Settings:
        """The service's servers under a key prefix of their own: for the sections that call
        the services in process (context, migration, statistics, search)."""
        values: dict[str, object] = {"redis_key_prefix": f"b{uuid.uuid4().hex[:6]}:"}
        values.update(overrides)
        return dataclasses.replace(self.service, **values)  # type: ignore[arg-type]

    def anchor_settings(self) -> Settings:
        """Celery's own ceiling: the same Redis server, databases of its own (3 and 4), so the
        anchor's worker and the service's never take each other's tasks."""
        broker = self.service.require("broker_url")
        if not broker.startswith("redis"):
            raise RuntimeError("the bench's anchor worker needs a Redis broker")
        base = broker.rsplit("/", 1)[0]
        return dataclasses.replace(self.service, broker_url=f"{base}/3",
                                   result_backend=f"{base}/4")

    def broker(self) -> redis.Redis:
        return redis.Redis.from_url(self.service.require("broker_url"))

    def stop(self) -> None:
        if self.process.poll() is None:
            # The runner alone (as Ctrl-C would): it stops its processes, then the servers.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@contextmanager
def anchor_worker(run: ServiceRun, concurrency: int = 2) -> Iterator[Settings]:
    """The anchors' worker: Celery's no-op and echo tasks on the service's app configuration,
    2 prefork processes (ANCHORS.md), its own queues' databases."""
    from tests.workers import running_worker

    settings = run.anchor_settings()
    with running_worker(settings, PROJECT_ROOT / "var" / "bench-anchor.log",
                        concurrency=concurrency, name="anchor", app_module="bench.noop_app"):
        yield settings
