"""`make run`: the whole service in one terminal, on embedded servers unless URLs are given."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from config.settings import EMBEDDED_ENDPOINTS_FILE, Settings
from conversation.embedded import EmbeddedPostgres, EmbeddedRedis

STOP_TIMEOUT = 20.0
DEMO_TENANT = "demo"


def _say(text: str) -> None:
    print(f"[conversation] {text}", file=sys.stderr, flush=True)


class Runner:
    def __init__(self, env: dict[str, str], grace_seconds: int | None) -> None:
        self.env = env
        self.grace_seconds = grace_seconds
        self.var_dir = Path(env.get("CONVERSATION_VAR_DIR") or Settings().var_dir).resolve()
        self.redis: EmbeddedRedis | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start_servers(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        (self.var_dir / EMBEDDED_ENDPOINTS_FILE).unlink(missing_ok=True)
        endpoints: dict[str, str] = {}
        if not self.env.get("REDIS_URL"):
            self.redis = EmbeddedRedis(self.var_dir / "redis").start()
            endpoints["REDIS_URL"] = f"{self.redis.url}/0"
            endpoints.setdefault("CELERY_BROKER_URL", f"{self.redis.url}/1")
            endpoints.setdefault("CELERY_RESULT_BACKEND", f"{self.redis.url}/2")
            _say(f"embedded Redis      {self.redis.url} (data in {self.redis.data_dir})")
        if not self.env.get("DATABASE_URL"):
            self.postgres = EmbeddedPostgres(self.var_dir / "postgres").start()
            endpoints["DATABASE_URL"] = self.postgres.url
            _say(f"embedded PostgreSQL {self.postgres.url} (data in {self.postgres.data_dir})")
        for name, value in endpoints.items():
            self.env.setdefault(name, value)
        # Every process writes its metrics here; the API adds them up. Stale files of a
        # previous run would be added too: start empty.
        metrics = self.var_dir / "metrics"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir(parents=True)
        self.env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics))
        # Readable lines in a terminal; production (deploy/) logs JSON, the default.
        self.env.setdefault("LOG_FORMAT", "console")
        if self.grace_seconds is not None:
            self.env["SESSION_GRACE_SECONDS"] = str(self.grace_seconds)
        (self.var_dir / EMBEDDED_ENDPOINTS_FILE).write_text(json.dumps(endpoints, indent=2))

    def prepare_database(self) -> str:
        from conversation.adapters.schema_migrations import set_search_languages, upgrade
        from conversation.bootstrap import Container

        settings = Settings.from_env(self.env)
        upgrade(settings.require("database_url"))
        set_search_languages(settings.require("database_url"), settings.search_languages)
        container = Container(settings)
        try:
            return container.api_keys.create(DEMO_TENANT, label="make run demo key")
        finally:
            container.close()

    def spawn(self, name: str, *args: str) -> None:
        command = [sys.executable, "-m", "conversation.cli", *args]
        self.children[name] = subprocess.Popen(command, env=self.env)

    def start_processes(self) -> None:
        self.spawn("worker", "worker")
        self.spawn("beat", "beat")
        self.spawn("api", "api")
        self.spawn("flower", "flower")

    def wait(self) -> int:
        while not self.stopping:
            for name, child in self.children.items():
                if child.poll() is not None:
                    _say(f"{name} exited with code {child.returncode}: stopping everything")
                    return 1
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        self.stopping = True
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, child in self.children.items():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _say(f"{name} did not stop in time: killing it")
                child.kill()
                child.wait(5)
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()
        (self.var_dir / EMBEDDED_ENDPOINTS_FILE).unlink(missing_ok=True)
        _say("stopped")


def run(grace_seconds: int | None = None) -> int:
    runner = Runner(dict(os.environ), grace_seconds)

    def on_signal(signum: int, _frame: Any) -> None:
        runner.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 1
    try:
        runner.start_servers()
        api_key = runner.prepare_database()
        runner.start_processes()
        settings = Settings.from_env(runner.env)
        api = f"http://{settings.api_host}:{settings.api_port}"
        _say("running; Ctrl-C stops everything")
        _say(f"API       {api}  (docs {api}/api/docs, health {api}/health)")
        _say(f"dashboard {api}/dashboard  (tenant '{DEMO_TENANT}', the demo key below)")
        _say(f"Flower    http://127.0.0.1:{settings.flower_port}")
        _say(f"broker    {settings.broker_url}")
        _say(f"demo key  tenant '{DEMO_TENANT}': {api_key}")
        _say(f"try       curl -H 'Authorization: Bearer {api_key}' "
             f"{api}/api/conversations/list/{DEMO_TENANT}")
        code = runner.wait()
    finally:
        runner.stop()
    return code
