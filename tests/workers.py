"""A real Celery worker in a subprocess, for integration and e2e tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from celery import Celery

from config.celery import WORK_QUEUES, celery_config
from config.settings import PROJECT_ROOT, Settings

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": settings.redis_url or "",
            "REDIS_CLUSTER": "true" if settings.redis_cluster else "false",
            "REDIS_KEY_PREFIX": settings.redis_key_prefix,
            "CELERY_BROKER_URL": settings.broker_url or "",
            "CELERY_RESULT_BACKEND": settings.result_backend or "",
            "DATABASE_URL": settings.database_url or "",
            "SESSION_GRACE_SECONDS": str(settings.session_grace_seconds),
            "BEAT_INTERVAL_SECONDS": str(settings.beat_interval_seconds),
            "BEAT_LOCK_SECONDS": str(settings.beat_lock_seconds),
            "BEAT_REDIS_URL": settings.beat_redis_url or "",
            "BROKER_VISIBILITY_TIMEOUT": str(settings.broker_visibility_timeout),
            "CONVERSATION_VAR_DIR": str(settings.var_dir),
            "PYTHONUNBUFFERED": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir(settings)),
        }
    )
    return env


def metrics_dir(settings: Settings) -> Path:
    """Where this test's workers write their metrics (prometheus multiprocess mode)."""
    path = settings.var_dir / f"metrics-{settings.redis_key_prefix.strip(':')}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def producer(settings: Settings) -> Celery:
    """What an upstream service has: a Celery app that knows only the broker and backend."""
    app = Celery("test-producer", set_as_current=False)
    app.config_from_object(celery_config(settings))
    return app


@contextmanager
def running_worker(
    settings: Settings,
    log_path: Path,
    *,
    concurrency: int = 2,
    queues: tuple[str, ...] = WORK_QUEUES,
    name: str = "test",
    app_module: str = "tasks.app",
    extra_env: dict[str, str] | None = None,
    pool: str = "prefork",
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a worker, wait until it answers a ping, and always stop it."""
    app = producer(settings)
    hostname = f"{name}-{os.getpid()}-{time.monotonic_ns()}@localhost"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app_module, "worker", "--loglevel", "INFO",
             "--pool", pool, "--concurrency", str(concurrency), "-Q", ",".join(queues),
             "--hostname", hostname, "--without-gossip", "--without-mingle"],
            cwd=PROJECT_ROOT, env={**settings_env(settings), **(extra_env or {})}, stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited at start:\n{log_path.read_text()[-3000:]}")
            if app.control.ping(destination=[hostname], timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready in time:\n{log_path.read_text()[-3000:]}")
        yield process
    finally:
        stop(process)
        app.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):  # noqa: ANN001, ANN201
    """Poll until `predicate()` is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def start_worker_group(
    settings: Settings, log_path: Path, queues: tuple[str, ...], name: str
) -> subprocess.Popen[bytes]:
    """A worker in a process group of its own, for tests that kill -9 it, pool and all.
    Its caller waits for it by what it does, and always ends it with `kill_group`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "--pool", "prefork",
             "--concurrency", "2", "-Q", ",".join(queues), "--loglevel", "INFO",
             "--hostname", f"{name}-{os.getpid()}@localhost", "--without-gossip",
             "--without-mingle"],
            cwd=PROJECT_ROOT, env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """kill -9 the worker and its pool processes (a crash, not a shutdown)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(STOP_TIMEOUT)
