"""`make run`: the whole service in one terminal, on embedded servers unless URLs are given."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kombu.utils.url import maybe_sanitize_url

from config.settings import EMBEDDED_ENDPOINTS_FILE, ConfigurationError, Settings
from conversation.embedded import EmbeddedPostgres, EmbeddedRedis, die_with_parent

STOP_TIMEOUT = 20.0
DEMO_TENANT = "demo"


def _say(text: str) -> None:
    print(f"[conversation] {text}", file=sys.stderr, flush=True)


# Why a small supervisor of our own rather than supervisord, circus or honcho (issue 14): the
# runner must start embedded servers first and stop them last, hand its children an environment
# it computes at start (the embedded servers' URLs), and give up, stopping everything with a
# non-zero exit, once one process keeps dying. honcho never restarts a process; supervisord
# restarts for ever once a process outlived `startsecs` (giving up needs an event-listener
# process of its own) and runs from a generated config file; circus's flapping detection stops
# only the flapping watcher, not the whole, and brings pyzmq and tornado along. Each would be
# more code around it than the ~80 lines below. In production (deploy/) the orchestrator
# restarts processes instead: Docker's `restart:`, Kubernetes' pods.
#
# When to give up: a process "keeps dying" when it dies RESTART_LIMIT times in a row, each time
# within STABLE_SECONDS of its (re)start. A process that ran STABLE_SECONDS or more before it
# died was serving: its death starts the count (and the backoff) afresh. A count of deaths
# within a fixed window would miss a crash loop slower than the backoff (a process dying 12 s
# after each start never fits 5 deaths in 60 s once the waits are 1, 2, 4, 8 s).
RESTART_LIMIT = 5  # early deaths in a row of one process: give up
STABLE_SECONDS = 60.0  # a death this long after the start is not an early one
FIRST_BACKOFF = 1.0  # seconds before the first restart, doubled for each early death in a row
POLL_SECONDS = 0.2
# A terminal closed (SIGHUP) stops everything as Ctrl-C (SIGINT) and SIGTERM do.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call `stop` (which must only set flags) on any of STOP_SIGNALS."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda _signum, _frame: stop())



@dataclass
class Program:
    """One process the supervisor keeps running."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    early_deaths: int = 0  # in a row, each within `stable_seconds` of its start
    restart_at: float = 0.0


class Supervisor:
    """Starts processes, restarts one that exits (with backoff, one log line each time), and
    gives up, stopping them all, when one dies `restart_limit` times in a row, each time
    within `stable_seconds` of its start (see RESTART_LIMIT)."""

    def __init__(self, programs: dict[str, list[str]], env: dict[str, str], *,
                 restart_limit: int = RESTART_LIMIT, stable_seconds: float = STABLE_SECONDS,
                 first_backoff: float = FIRST_BACKOFF) -> None:
        self.programs = [Program(name, argv) for name, argv in programs.items()]
        self.env = env
        self.restart_limit = restart_limit
        self.stable_seconds = stable_seconds
        self.first_backoff = first_backoff
        self.stopping = False

    def start(self) -> None:
        for program in self.programs:
            self._spawn(program)

    def _spawn(self, program: Program) -> None:
        # A session of its own: on a death, its orphans (gunicorn's workers, Celery's pool)
        # can be killed with it before the restart, and Ctrl-C in the terminal reaches the
        # runner alone, which then stops every process in order. It dies with the runner.
        program.process = subprocess.Popen(program.argv, env=self.env, start_new_session=True,
                                           preexec_fn=die_with_parent())
        program.started_at = time.monotonic()

    def run(self) -> int:
        """Supervise until asked to stop (0) or until a process keeps dying (1)."""
        while not self.stopping:
            now = time.monotonic()
            for program in self.programs:
                if program.process is None:
                    if now >= program.restart_at:
                        self._spawn(program)
                elif program.process.poll() is not None and not self._restart_later(program, now):
                    return 1
            time.sleep(POLL_SECONDS)
        return 0

    def _restart_later(self, program: Program, now: float) -> bool:
        """Schedule the restart of a process that exited; False when it keeps dying."""
        assert program.process is not None
        code = program.process.returncode
        _kill_group(program.process.pid)
        program.process = None
        lived = now - program.started_at
        program.early_deaths = program.early_deaths + 1 if lived < self.stable_seconds else 1
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        recent = program.early_deaths
        if recent >= self.restart_limit:
            _say(f"{program.name} {how}: {recent} deaths in a row, each within "
                 f"{self.stable_seconds:g} s of its start, giving up: stopping everything")
            return False
        delay = self.first_backoff * 2 ** (recent - 1)
        program.restart_at = now + delay
        _say(f"{program.name} {how} after {lived:.0f} s: restarting it in {delay:g} s "
             f"(early death {recent} of {self.restart_limit} allowed in a row)")
        return True

    def stop(self) -> None:
        self.stopping = True
        running = [p for p in self.programs if p.process is not None]
        for program in running:
            if program.process is not None and program.process.poll() is None:
                program.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for program in running:
            assert program.process is not None
            try:
                program.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _say(f"{program.name} did not stop in time: killing it")
                program.process.kill()
                program.process.wait(5)
            _kill_group(program.process.pid)  # whatever it left behind
            program.process = None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Runner:
    def __init__(self, env: dict[str, str], grace_seconds: int | None) -> None:
        self.env = env
        self.grace_seconds = grace_seconds
        self.var_dir = Path(env.get("CONVERSATION_VAR_DIR") or Settings().var_dir).resolve()
        self.redis: EmbeddedRedis | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.supervisor: Supervisor | None = None

    def start_servers(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        (self.var_dir / EMBEDDED_ENDPOINTS_FILE).unlink(missing_ok=True)
        endpoints: dict[str, str] = {}
        if not self.env.get("REDIS_URL"):
            self.redis = EmbeddedRedis(self.var_dir / "redis").start()
            endpoints["REDIS_URL"] = f"{self.redis.url}/0"
            # Only what the user did not set: embedded.json tells `make demo`, `dlq replay`
            # and the simulator where to publish, so it must name the broker in effect.
            for name, db in (("CELERY_BROKER_URL", 1), ("CELERY_RESULT_BACKEND", 2)):
                if not self.env.get(name):
                    endpoints[name] = f"{self.redis.url}/{db}"
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

    def processes(self) -> dict[str, list[str]]:
        command = [sys.executable, "-m", "conversation.cli"]
        return {name: [*command, name] for name in ("worker", "beat", "api", "flower")}

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()
        (self.var_dir / EMBEDDED_ENDPOINTS_FILE).unlink(missing_ok=True)
        _say("stopped")


def run(grace_seconds: int | None = None) -> int:
    runner = Runner(dict(os.environ), grace_seconds)
    stop_requested = False

    def on_signal() -> None:
        nonlocal stop_requested
        stop_requested = True
        if runner.supervisor is not None:
            runner.supervisor.stopping = True

    stop_on_signals(on_signal)
    code = 1
    try:
        runner.start_servers()
        settings = Settings.from_env(runner.env)
        from tasks.beat import check_beat_redis

        try:
            settings.check_celery_urls()
        except ConfigurationError as exc:
            _say(f"cannot start the workers: {exc}")
            return 2
        try:
            check_beat_redis(settings.beat_redis())
        except ConfigurationError as exc:
            _say(f"cannot start beat: {exc}")
            return 2
        api_key = runner.prepare_database()
        if stop_requested:
            return 0
        runner.supervisor = Supervisor(runner.processes(), runner.env)
        runner.supervisor.stopping = stop_requested  # a signal during the line above
        runner.supervisor.start()
        api = f"http://{settings.api_host}:{settings.api_port}"
        _say("running; Ctrl-C stops everything")
        _say(f"API       {api}  (docs {api}/api/docs, health {api}/health)")
        _say(f"dashboard {api}/dashboard  (tenant '{DEMO_TENANT}', the demo key below)")
        _say(f"Flower    http://127.0.0.1:{settings.flower_port}")
        _say(f"broker    {maybe_sanitize_url(settings.broker_url)}")
        _say(f"beat      schedule and lock in {maybe_sanitize_url(settings.beat_redis())}")
        _say(f"demo key  tenant '{DEMO_TENANT}': {api_key}")
        _say(f"try       curl -H 'Authorization: Bearer {api_key}' "
             f"{api}/api/conversations/list/{DEMO_TENANT}")
        _say(f"a process that exits is restarted; {RESTART_LIMIT} deaths of one in a row, each "
             f"within {STABLE_SECONDS:g} s of its start, stop everything")
        code = runner.supervisor.run()
    finally:
        runner.stop()
    return code
