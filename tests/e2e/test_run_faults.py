"""Faults under `conversation run` itself: the real runner and its four processes (worker, beat,
API, Flower), driven as users drive them (tasks by name, HTTP). The active store's Redis stopped
mid-ingest, and kill -9 of beat and of the API: the service keeps serving, the runner restarts
what died, and nothing is lost or stored twice."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
import redis
from celery import Celery
from sqlalchemy import select

from config.settings import PROJECT_ROOT, Settings
from conversation.adapters.postgres.schema import conversations
from conversation.bootstrap import Container
from conversation.embedded import EmbeddedRedis, free_port
from tests.workers import producer, settings_env, wait_until

pytestmark = pytest.mark.e2e

RESTARTED = re.compile(r"\[conversation\] (\w+) (?:exited with code -?\d+|was killed by \w+)"
                       r" after \d+ s: restarting it in")
SENDING = "Sending due task"
LOCKED = "beat: Acquired lock"


@dataclass
class Stack:
    """A running `conversation run`."""

    process: subprocess.Popen[bytes]
    log: Path
    api: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def restarts(self) -> list[str]:
        return RESTARTED.findall(self.text())

    def child(self, name: str) -> psutil.Process | None:
        """The runner's live process for `name` (worker, beat, flower: Celery; api: gunicorn)."""
        for process in psutil.Process(self.process.pid).children():
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
                cmdline = process.cmdline()
            except psutil.NoSuchProcess:
                continue
            if name == "api" and "gunicorn" in cmdline:
                return process
            if name != "api" and "celery" in cmdline and name in cmdline:
                return process
        return None

    def get(self, path: str, key: str | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(f"{self.api}{path}")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, {}
        except OSError:
            return 0, {}


@contextmanager
def conversation_run(settings: Settings, run_dir: Path, **extra_env: str) -> Iterator[Stack]:
    """`conversation run` on these settings, free ports, and a var/ of its own; waits until the
    API answers, a worker answers a ping and beat has sent; always stopped (SIGTERM)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    api_port, flower_port = free_port(), free_port()
    env = settings_env(settings)
    env.pop("PROMETHEUS_MULTIPROC_DIR")  # the runner's own, under run_dir
    env.update({"API_PORT": str(api_port), "FLOWER_PORT": str(flower_port),
                "CONVERSATION_VAR_DIR": str(run_dir), **extra_env})
    log = run_dir / "run.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "conversation.cli", "run"],
                                   cwd=PROJECT_ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    stack = Stack(process, log, f"http://127.0.0.1:{api_port}")
    app = producer(settings)
    try:
        wait_until(lambda: process.poll() is not None or stack.get("/health")[0] == 200,
                   timeout=90, interval=0.5, what="the API")
        assert process.poll() is None, stack.text()[-4000:]
        wait_until(lambda: app.control.ping(timeout=0.5), timeout=90, what="a worker")
        wait_until(lambda: SENDING in stack.text(), timeout=60, what="beat to send")
        yield stack
    finally:
        app.close()
        descendants = _descendants(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for leftover in descendants:  # only if the runner failed to stop them
            try:
                leftover.kill()
            except psutil.NoSuchProcess:
                pass


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def payload(session: str, i: int, at: datetime) -> dict:
    return {"tenant_id": "runfaults", "session_id": session, "agent_id": "bot",
            "role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}",
            "message_id": f"{session}-m{i}",
            "created_at": (at + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def session_conversations(container: Container, session: str) -> list[str]:
    with container.engine.connect() as connection:
        return list(connection.scalars(select(conversations.c.id).where(
            conversations.c.tenant_id == "runfaults", conversations.c.session_id == session)))


def drained(broker: redis.Redis, queue: str) -> bool:
    """Nothing of `queue` waiting or in flight (beat's tasks, retried in the outage with a
    countdown, stay unacknowledged meanwhile: not counted)."""
    if broker.llen(queue):
        return False
    return all(json.loads(raw)[2] != queue for raw in broker.hvals("unacked"))


def send_saves(app: Celery, sessions: list[str], numbers: range, at: datetime) -> None:
    for i in numbers:
        app.send_task("conversation.save_message", kwargs=payload(sessions[i % len(sessions)], i, at),
                      queue="conversation.save")


def test_the_active_store_stopped_mid_ingest_under_conversation_run(
    settings: Settings, test_var_dir: Path
) -> None:
    store = EmbeddedRedis(test_var_dir / "run-store-redis", persist=True).start()
    settings = replace(settings, redis_url=f"{store.url}/0", session_grace_seconds=1,
                       beat_interval_seconds=1, beat_lock_seconds=3)
    run_dir = test_var_dir / f"run-{settings.redis_key_prefix.strip(':')}"
    container = Container(settings)
    app = producer(settings)
    broker = redis.Redis.from_url(settings.broker_url or "")
    sessions = [f"rs{s}" for s in range(5)]
    at = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    key = container.api_keys.create("runfaults")
    try:
        with conversation_run(settings, run_dir) as stack:
            send_saves(app, sessions, range(100), at)
            wait_until(lambda: container.active_store.session_conversation("runfaults", "rs4"),
                       timeout=60, what="the first messages in Redis")
            store.stop()  # the active store goes away mid-ingest
            send_saves(app, sessions, range(100, 200), at)
            wait_until(lambda: drained(broker, "conversation.save"), timeout=90, interval=0.5,
                       what="the ingest to go on with the active store down")

            # Context reads go on, from PostgreSQL: the outage's messages are there.
            context = app.send_task(
                "conversation.get_context", queue="conversation.context",
                kwargs={"tenant_id": "runfaults", "session_id": "rs0", "window": "8k"},
            ).get(timeout=60)
            assert "message 195" in [m["content"] for m in context["messages"]]
            # The API answers: health, and a read (PostgreSQL's side of the tenant).
            assert stack.get("/health")[0] == 200
            status, page = stack.get("/api/conversations/list/runfaults", key)
            assert status == 200 and page["items"], page

            sent_before_restart = stack.text().count(SENDING)
            store.start()  # same port, same data (AOF)
            send_saves(app, sessions, range(200, 300), at)
            wait_until(lambda: drained(broker, "conversation.save"), timeout=90, interval=0.5,
                       what="the ingest after the active store is back")
            for session in sessions:
                app.send_task("conversation.session_closed", queue="conversation.sessions",
                              kwargs={"tenant_id": "runfaults", "session_id": session})

            def persisted() -> dict[str, list[str]]:
                found: dict[str, list[str]] = {}
                for session in sessions:
                    for conversation in session_conversations(container, session):
                        found.setdefault(session, []).extend(
                            m.id for m in container.repository.messages(conversation))
                return found

            wait_until(lambda: sum(map(len, persisted().values())) == 300
                       and not any(container.active_store.session_conversation("runfaults", s)
                                   for s in sessions),
                       timeout=90, interval=0.5, what="all 300 messages in PostgreSQL")
            # Every message there once, in order, one conversation per session.
            stored = persisted()
            for s, session in enumerate(sessions):
                assert stored[session] == [f"{session}-m{i}" for i in range(s, 300, 5)]
                assert len(session_conversations(container, session)) == 1

            # Beat kept scheduling, and every process is the one the runner started first.
            wait_until(lambda: stack.text().count(SENDING) > sent_before_restart + 3,
                       timeout=30, what="beat to keep sending")
            assert app.control.ping(timeout=2)
            assert all(stack.child(name) for name in ("worker", "beat", "api", "flower"))
            assert stack.restarts() == [], stack.text()[-4000:]
            assert "giving up" not in stack.text()
        assert stack.process.returncode == 0
    finally:
        app.close()
        broker.close()
        container.close()
        store.stop()


def test_kill_9_of_beat_and_of_the_api_under_conversation_run(
    settings: Settings, test_var_dir: Path
) -> None:
    settings = replace(settings, beat_interval_seconds=1, beat_lock_seconds=3)
    run_dir = test_var_dir / f"run-{settings.redis_key_prefix.strip(':')}"
    with conversation_run(settings, run_dir) as stack:
        beat = stack.child("beat")
        assert beat is not None
        beat.kill()  # dies holding the lock
        wait_until(lambda: stack.restarts() == ["beat"], timeout=20, what="the runner to log it")
        wait_until(lambda: stack.text().count(LOCKED) == 2, timeout=30,
                   what="the new beat to take the lock once the old one's expires")
        sent = stack.text().count(SENDING)
        wait_until(lambda: stack.text().count(SENDING) > sent, timeout=20,
                   what="the new beat to send")
        new_beat = stack.child("beat")
        assert new_beat is not None and new_beat.pid != beat.pid

        api = stack.child("api")
        assert api is not None
        api.kill()
        wait_until(lambda: stack.restarts() == ["beat", "api"], timeout=20,
                   what="the runner to log it")
        wait_until(lambda: stack.get("/health")[0] == 200, timeout=60, interval=0.5,
                   what="the API to answer again")
        new_api = stack.child("api")
        assert new_api is not None and new_api.pid != api.pid
        assert "giving up" not in stack.text()
        # The terminal closed: SIGHUP stops everything as Ctrl-C does.
        stack.process.send_signal(signal.SIGHUP)
        stack.process.wait(60)
    assert stack.process.returncode == 0
    assert not psutil.pid_exists(new_beat.pid) and not psutil.pid_exists(new_api.pid)


def test_conversation_run_refuses_to_start_without_a_redis_for_beat(
    settings: Settings, test_var_dir: Path
) -> None:
    env = settings_env(replace(settings, broker_url="amqp://guest:guest@127.0.0.1:5672//",
                               result_backend="rpc://"))
    env["CONVERSATION_VAR_DIR"] = str(test_var_dir / "run-refused")
    done = subprocess.run([sys.executable, "-m", "conversation.cli", "run"], check=False,
                          cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=120)
    assert done.returncode == 2
    assert b"cannot start beat" in done.stderr and b"set BEAT_REDIS_URL" in done.stderr
    assert b"running;" not in done.stderr  # nothing was started
