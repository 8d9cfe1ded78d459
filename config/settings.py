"""One frozen settings object, read from the environment (see CONTRACT.md section 5).

When a URL is not set, the service uses the embedded Redis / PostgreSQL that `make run`
starts under `var/`; their addresses are written to `var/embedded.json` while they run, so the
operator CLI finds them without any variable set.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAR_DIR = PROJECT_ROOT / "var"
EMBEDDED_ENDPOINTS_FILE = "embedded.json"

# Context windows of the design: window -> (strategy, token budget).
DEFAULT_WINDOWS: dict[str, tuple[str, int]] = {
    "8k": ("token_buffer", 6_000),
    "32k": ("token_buffer", 28_000),
    "128k": ("summary_buffer", 120_000),
}

# Model -> window. Prefix match, longest prefix wins; unknown models get 8k and a warning.
DEFAULT_MODEL_WINDOWS: dict[str, str] = {
    "gpt-4o": "128k",
    "gpt-4.1": "128k",
    "gpt-4-turbo": "128k",
    "gpt-4-32k": "32k",
    "gpt-4": "8k",
    "gpt-3.5-turbo-16k": "32k",
    "gpt-3.5-turbo": "8k",
    "o1": "128k",
    "o3": "128k",
    "o4": "128k",
    "claude": "128k",
    "llama-3": "8k",
    "mistral": "32k",
}

# Why 3600 s: a Redis broker redelivers an unacknowledged task after this many seconds. Our
# countdown tasks (the 30 s migration timer) sit unacknowledged in a worker until they are due,
# so the timeout must be well above SESSION_GRACE_SECONDS, or Redis would hand the same timer to
# a second worker. A task lost with a killed worker comes back after an hour at the latest, and
# the cleanup beat job migrates any closed session the lost timer missed long before that.
DEFAULT_VISIBILITY_TIMEOUT = 3600


ENV_NAMES = {
    "broker_url": "CELERY_BROKER_URL",
    "result_backend": "CELERY_RESULT_BACKEND",
    "beat_redis_url": "BEAT_REDIS_URL",
}
PLAIN_REDIS_SCHEMES = ("redis://", "rediss://")


class ConfigurationError(RuntimeError):
    """The environment does not say where a server is, and no embedded one is running."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc


def _log_level(name: str) -> str:
    """LOG_LEVEL in the one spelling both its readers take: logging's setLevel (the API)
    takes upper-case names only, Celery's --loglevel (worker, beat) any case but not WARN."""
    level = name.strip().upper()
    return "WARNING" if level == "WARN" else level


def read_embedded_endpoints(var_dir: Path) -> dict[str, str]:
    """The URLs of the embedded servers that `conversation run` started, if it runs."""
    path = var_dir / EMBEDDED_ENDPOINTS_FILE
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    redis_cluster: bool = False
    redis_key_prefix: str = ""
    broker_url: str | None = None
    result_backend: str | None = None
    database_url: str | None = None
    database_replica_url: str | None = None
    session_grace_seconds: int = 30
    idle_timeout_seconds: int = 24 * 3600
    # How often beat sends aggregate_stats and cleanup.
    beat_interval_seconds: int = 60
    # Beat HA (celery-redbeat): a dead beat's lock passes to another after this long.
    beat_lock_seconds: int = 30
    # Where beat keeps its schedule and lock: a plain Redis, never the active store's cluster.
    # None: the broker's Redis, else the result backend's (see `beat_redis`).
    beat_redis_url: str | None = None
    max_message_chars: int = 200_000
    # get_context's wait_for_message_id: how many of a tenant's reads may block for their
    # message at a time, across workers (each holds a worker process up to 2 s); past it, a
    # read answers at once ("waited_for": "missing" unless the message is there). 0: no cap.
    waits_per_tenant: int = 4
    # A task's payload past this many bytes of text is refused whole, before its items are
    # validated one by one (1,000 messages of 200,000 characters would be ~0.8 GB).
    max_task_bytes: int = 16 * 1024 * 1024
    broker_visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    flower_port: int = 5555
    api_rate_limit: str = "600/minute"
    # PostgreSQL's statement_timeout on the API's reads: longer, and the request answers 503.
    api_statement_timeout_ms: int = 5_000
    # Flower's `user:password` (comma-separated for several); required beyond loopback.
    flower_basic_auth: str | None = field(default=None, repr=False)  # a secret: never logged
    default_encoding: str = "cl100k_base"
    windows: Mapping[str, tuple[str, int]] = field(default_factory=lambda: dict(DEFAULT_WINDOWS))
    model_windows: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODEL_WINDOWS))
    var_dir: Path = DEFAULT_VAR_DIR
    alert_webhook_url: str | None = None
    # "json" (one object a line) or "console" (config/logging.py checks it).
    log_format: str = "json"
    log_level: str = "INFO"
    # Celery's INFO line for every task received and every task that succeeded (config/logging.py
    # says why they are off by default).
    log_every_task: bool = False
    # Flower switches the workers' task events on (config/celery.py says why it does not by
    # default).
    flower_task_events: bool = False
    # A LangChain chat model for summaries ("provider:model", as init_chat_model takes it), or
    # "extractive": LexRank, offline.
    summary_model: str = "extractive"
    summary_language: str = "english"
    # Text search configurations messages are indexed in (PostgreSQL's names).
    search_languages: tuple[str, ...] = ("english", "spanish")
    # A worker serves its processes' Prometheus metrics on this port (0: it does not).
    metrics_port: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Each setting from its variable; an unset (or empty) one keeps the default written
        above, the only place a default is written."""
        env = os.environ if env is None else env
        default = cls()
        var_dir = Path(env.get("CONVERSATION_VAR_DIR") or default.var_dir)
        embedded = read_embedded_endpoints(var_dir)

        def url(name: str) -> str | None:
            return env.get(name) or embedded.get(name) or None

        def text(name: str, fallback: str) -> str:
            return env.get(name) or fallback

        def number(name: str, fallback: int) -> int:
            return _int(env, name, fallback)

        redis_url = url("REDIS_URL")
        database_url = url("DATABASE_URL")
        languages = env.get("SEARCH_LANGUAGES")
        return cls(
            redis_url=redis_url,
            redis_cluster=_bool(env.get("REDIS_CLUSTER"), default.redis_cluster),
            redis_key_prefix=env.get("REDIS_KEY_PREFIX", default.redis_key_prefix),
            broker_url=url("CELERY_BROKER_URL") or redis_url,
            result_backend=url("CELERY_RESULT_BACKEND") or redis_url,
            database_url=database_url,
            database_replica_url=url("DATABASE_REPLICA_URL") or database_url,
            session_grace_seconds=number("SESSION_GRACE_SECONDS", default.session_grace_seconds),
            idle_timeout_seconds=number("IDLE_TIMEOUT_SECONDS", default.idle_timeout_seconds),
            beat_interval_seconds=number("BEAT_INTERVAL_SECONDS", default.beat_interval_seconds),
            beat_lock_seconds=number("BEAT_LOCK_SECONDS", default.beat_lock_seconds),
            beat_redis_url=url("BEAT_REDIS_URL"),
            max_message_chars=number("MAX_MESSAGE_CHARS", default.max_message_chars),
            waits_per_tenant=number("WAITS_PER_TENANT", default.waits_per_tenant),
            max_task_bytes=number("MAX_TASK_BYTES", default.max_task_bytes),
            broker_visibility_timeout=number("BROKER_VISIBILITY_TIMEOUT",
                                             default.broker_visibility_timeout),
            api_host=text("API_HOST", default.api_host),
            api_port=number("API_PORT", default.api_port),
            flower_port=number("FLOWER_PORT", default.flower_port),
            api_rate_limit=text("API_RATE_LIMIT", default.api_rate_limit),
            api_statement_timeout_ms=number("API_STATEMENT_TIMEOUT_MS",
                                            default.api_statement_timeout_ms),
            flower_basic_auth=env.get("FLOWER_BASIC_AUTH") or None,
            default_encoding=text("DEFAULT_ENCODING", default.default_encoding),
            var_dir=var_dir,
            alert_webhook_url=env.get("ALERT_WEBHOOK_URL") or None,
            log_format=text("LOG_FORMAT", default.log_format),
            log_level=_log_level(text("LOG_LEVEL", default.log_level)),
            log_every_task=_bool(env.get("LOG_EVERY_TASK"), default.log_every_task),
            flower_task_events=_bool(env.get("FLOWER_TASK_EVENTS"), default.flower_task_events),
            summary_model=text("SUMMARY_MODEL", default.summary_model),
            summary_language=text("SUMMARY_LANGUAGE", default.summary_language),
            search_languages=tuple(
                name.strip() for name in languages.split(",") if name.strip()
            ) if languages else default.search_languages,
            metrics_port=number("METRICS_PORT", default.metrics_port),
        )

    def require(self, name: str) -> str:
        """The value of a URL setting, or a clear error saying how to get one."""
        value = getattr(self, name)
        if not value:
            variable = ENV_NAMES.get(name, name.upper())
            raise ConfigurationError(
                f"{variable} is not set and no embedded server is running: "
                "start the service with `make run`, or set the URLs (see README)."
            )
        return str(value)

    def check_celery_urls(self) -> None:
        """Refuse a broker or result backend that defaulted to REDIS_URL when that names a node
        of a Redis Cluster: Celery speaks to one plain server, and a cluster node answers MOVED
        for the keys of the other nodes' slots, so tasks and results would fail at random."""
        if not self.redis_cluster:
            return
        for variable, url in (("CELERY_BROKER_URL", self.broker_url),
                              ("CELERY_RESULT_BACKEND", self.result_backend)):
            if url and url.startswith(PLAIN_REDIS_SCHEMES) and _same_server(url, self.redis_url):
                raise ConfigurationError(
                    f"{variable} names the Redis Cluster node of REDIS_URL (it defaults to it), "
                    "and Celery cannot use a cluster: set it to a plain Redis server or RabbitMQ "
                    "(see README, Redis Cluster)."
                )

    def beat_redis(self) -> str:
        """The plain Redis where beat keeps its schedule and lock: BEAT_REDIS_URL, else the
        broker's Redis, else the result backend's. Never the active store: beat must keep
        scheduling while the active store is down (the workers fall back to PostgreSQL), and
        celery-redbeat cannot talk to a Redis Cluster."""
        if self.beat_redis_url:
            return self.beat_redis_url
        for url in (self.broker_url, self.result_backend):
            if not url or not url.startswith(PLAIN_REDIS_SCHEMES):
                continue
            if self.redis_cluster and _same_server(url, self.redis_url):
                continue  # the result backend defaulted to a node of the cluster
            return url
        raise ConfigurationError(
            "beat needs a plain Redis for its schedule and lock, and neither the broker "
            f"({_scheme(self.broker_url)}) nor the result backend ({_scheme(self.result_backend)}) "
            "is one: set BEAT_REDIS_URL (a single Redis server, not a cluster node; see README)."
        )


def _scheme(url: str | None) -> str:
    return url.split("://", 1)[0] + "://..." if url else "not set"


def _same_server(url: str, other: str | None) -> bool:
    """Same host and port (the database number aside)."""
    if not other:
        return False
    a, b = urlsplit(url), urlsplit(other)
    return (a.hostname, a.port) == (b.hostname, b.port)
