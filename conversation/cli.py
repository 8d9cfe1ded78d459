"""The `conversation` console script: operator commands and the service's processes."""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from config.celery import WORK_QUEUES
from config.settings import ConfigurationError, Settings


def _container() -> Any:
    from conversation.bootstrap import Container

    return Container(Settings.from_env())


def _celery(*args: str) -> None:
    """Replace this process with a Celery command on the service's app."""
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "tasks.app", *args])


# --- processes ------------------------------------------------------------------------------

# Every queue's work is CPU-bound Python: even a context read spends ~0.4 ms decoding, walking
# and building its answer for ~0.1 ms waiting on Redis, so threads would queue on the GIL (a
# 16-thread context worker served 30 % fewer contexts a second than two processes, measured).
# Threads suit a worker that waits on something slow, such as summaries by a remote LLM.
THREADS_PER_WORKER = 16


def worker_concurrency(pool: str, concurrency: int) -> int:
    """The asked concurrency, or the pool's default: 16 threads, or one process per core."""
    if concurrency:
        return concurrency
    return THREADS_PER_WORKER if pool == "threads" else (os.cpu_count() or 1)


def cmd_worker(ns: argparse.Namespace) -> None:
    settings = Settings.from_env()
    try:
        settings.check_celery_urls()
    except ConfigurationError as exc:
        sys.exit(f"worker: {exc}")
    loglevel = ns.loglevel or settings.log_level
    _celery("worker", "--loglevel", loglevel, "-Q", ns.queues, "--pool", ns.pool,
            "--concurrency", str(worker_concurrency(ns.pool, ns.concurrency)),
            "--hostname", ns.hostname)


def cmd_beat(ns: argparse.Namespace) -> None:
    settings = Settings.from_env()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    # The schedule lives in Redis (celery-redbeat): run as many beats as you like.
    from tasks.beat import check_beat_redis

    try:
        settings.check_celery_urls()  # beat publishes every scheduled task to the broker
        check_beat_redis(settings.beat_redis())
    except ConfigurationError as exc:
        sys.exit(f"beat: {exc}")
    _celery("beat", "--loglevel", ns.loglevel or settings.log_level)


def flower_refusal(address: str, basic_auth: str | None) -> str | None:
    """Why Flower must not start: it shows every tenant's messages in task arguments, so
    beyond loopback it needs credentials, and there are no default ones."""
    if basic_auth:
        pairs = [entry.partition(":") for entry in basic_auth.split(",")]
        if any(not user or not password for user, _, password in pairs):
            return "FLOWER_BASIC_AUTH must be user:password (comma-separated for several)"
        return None
    try:
        loopback = address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False  # a host name, or "" (every interface)
    if loopback:
        return None
    return (f"refusing to serve Flower on {address or 'every interface'!r} without "
            "FLOWER_BASIC_AUTH=user:password: it shows every tenant's messages")


def cmd_flower(ns: argparse.Namespace) -> None:
    settings = Settings.from_env()
    refusal = flower_refusal(ns.address, settings.flower_basic_auth)
    if refusal:
        sys.exit(f"conversation flower: {refusal}")
    # Flower reads FLOWER_BASIC_AUTH from the environment itself: not on the command line,
    # where `ps` shows it to every user of the machine.
    # Task events only when asked for (FLOWER_TASK_EVENTS): see config/celery.py.
    _celery("flower", f"--port={ns.port or settings.flower_port}", f"--address={ns.address}",
            f"--enable_events={'true' if settings.flower_task_events else 'false'}")


def cmd_api(ns: argparse.Namespace) -> None:
    settings = Settings.from_env()
    host = ns.host or settings.api_host
    port = ns.port or settings.api_port
    os.execvp(sys.executable, [
        sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers",
        str(ns.workers), "--access-logfile", "-", "--graceful-timeout", "5", "api.wsgi:app",
    ])


def cmd_run(ns: argparse.Namespace) -> None:
    from conversation.runner import run

    sys.exit(run(grace_seconds=ns.grace))


# --- operators ------------------------------------------------------------------------------

def cmd_db_upgrade(ns: argparse.Namespace) -> None:
    from conversation.adapters.schema_migrations import set_search_languages, upgrade

    settings = Settings.from_env()
    upgrade(settings.require("database_url"), ns.revision)
    print(f"database upgraded to {ns.revision}", file=sys.stderr)
    if ns.revision == "head" and set_search_languages(settings.require("database_url"),
                                                       settings.search_languages):
        print(f"messages re-indexed for search in {', '.join(settings.search_languages)}",
              file=sys.stderr)


def cmd_apikey_create(ns: argparse.Namespace) -> None:
    if not ns.admin and not ns.tenant:
        sys.exit("give --tenant T, or --admin for an admin key")
    print(_container().api_keys.create(ns.tenant, admin=ns.admin, label=ns.label))


def cmd_apikey_list(ns: argparse.Namespace) -> None:
    for row in _container().api_keys.list(ns.tenant):
        print(json.dumps(row))


def cmd_apikey_revoke(ns: argparse.Namespace) -> None:
    if not _container().api_keys.revoke(ns.id):
        sys.exit(f"no active key with id {ns.id}")
    print(f"revoked key {ns.id}", file=sys.stderr)


def cmd_dlq_list(ns: argparse.Namespace) -> None:
    for row in _container().dead_letters.list(ns.limit, include_replayed=ns.all):
        print(json.dumps(row, default=str))


def cmd_dlq_replay(ns: argparse.Namespace) -> None:
    container = _container()
    count = container.dead_letters.replay(container.producer, ns.ids or None)
    print(f"replayed {count} dead letter(s)", file=sys.stderr)


def cmd_dlq_purge(ns: argparse.Namespace) -> None:
    count = _container().dead_letters.purge()
    print(f"purged {count} dead letter(s)", file=sys.stderr)


def cmd_erase_conversation(ns: argparse.Namespace) -> None:
    if not _container().eraser.erase_conversation(ns.conversation_id):
        sys.exit(f"no conversation {ns.conversation_id} in either tier")
    print(f"erased conversation {ns.conversation_id}", file=sys.stderr)


def cmd_erase_tenant(ns: argparse.Namespace) -> None:
    if not ns.yes:
        sys.exit(f"this erases every conversation of tenant {ns.tenant_id}: add --yes")
    report = _container().eraser.erase_tenant(ns.tenant_id)
    print(json.dumps(report.__dict__))


def cmd_retention_set(ns: argparse.Namespace) -> None:
    _container().repository.set_retention(ns.tenant_id, ns.days if ns.days > 0 else None)
    print(f"tenant {ns.tenant_id}: " + (f"{ns.days} days" if ns.days > 0 else "kept for ever"),
          file=sys.stderr)


def cmd_retention_list(ns: argparse.Namespace) -> None:
    print(json.dumps(_container().repository.retention()))


def cmd_export(ns: argparse.Namespace) -> None:
    from conversation.queries.export import encode, export_records

    container = _container()
    records = export_records(container.replica_engine, container.tiers, ns.tenant_id,
                             ns.start, ns.end)
    with open(ns.output, "wb") if ns.output else sys.stdout.buffer as out:
        for chunk in encode(records, ns.format):
            out.write(chunk)


def _aware_datetime(value: str) -> Any:
    from conversation.domain.messages import parse_timestamp

    try:
        return parse_timestamp(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or time: {value!r}") from None


def cmd_simulate(ns: argparse.Namespace) -> None:
    from conversation.simulator import simulate

    report = simulate(
        Settings.from_env(),
        tenants=ns.tenants,
        sessions=ns.sessions,
        turns=ns.turns,
        close=not ns.keep_open,
    )
    print(json.dumps(report, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conversation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="everything: embedded servers, worker, beat, API, Flower")
    p.add_argument("--grace", type=int, default=None, help="override SESSION_GRACE_SECONDS")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("worker", help="a Celery worker")
    p.add_argument("--queues", default=",".join(WORK_QUEUES))
    p.add_argument("--concurrency", type=int, default=0,
                   help="default: 16 threads, or one process per core")
    p.add_argument("--pool", default="prefork", choices=("prefork", "threads", "solo"),
                   help="threads only for work that waits (a remote summary model)")
    p.add_argument("--hostname", default="conversation@%h")
    p.add_argument("--loglevel", default=None, help="default: LOG_LEVEL")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("beat", help="Celery beat (statistics and cleanup schedule)")
    p.add_argument("--loglevel", default=None, help="default: LOG_LEVEL")
    p.set_defaults(func=cmd_beat)

    p = sub.add_parser("flower", help="Flower, the workers' dashboard")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--address", default="127.0.0.1")
    p.set_defaults(func=cmd_flower)

    p = sub.add_parser("api", help="the REST API under gunicorn")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_api)

    db = sub.add_parser("db", help="the PostgreSQL schema").add_subparsers(dest="db", required=True)
    p = db.add_parser("upgrade", help="apply the Alembic migrations")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=cmd_db_upgrade)

    keys = sub.add_parser("apikey", help="API keys").add_subparsers(dest="apikey", required=True)
    p = keys.add_parser("create", help="print a new key alone on standard output")
    p.add_argument("--tenant")
    p.add_argument("--admin", action="store_true")
    p.add_argument("--label")
    p.set_defaults(func=cmd_apikey_create)
    p = keys.add_parser("list", help="the keys (never the secrets), one JSON line each")
    p.add_argument("--tenant")
    p.set_defaults(func=cmd_apikey_list)
    p = keys.add_parser("revoke", help="revoke a key by id")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_apikey_revoke)

    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(dest="dlq", required=True)
    p = dlq.add_parser("list", help="dead letters, newest first, one JSON line each")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--all", action="store_true", help="include replayed ones")
    p.set_defaults(func=cmd_dlq_list)
    p = dlq.add_parser("replay", help="publish the original tasks again (fresh retries)")
    p.add_argument("ids", nargs="*", type=int)
    p.set_defaults(func=cmd_dlq_replay)
    p = dlq.add_parser("purge", help="delete every dead letter")
    p.set_defaults(func=cmd_dlq_purge)

    erase = sub.add_parser("erase", help="erase data from both tiers").add_subparsers(
        dest="erase", required=True)
    p = erase.add_parser("conversation", help="one conversation and all derived from it")
    p.add_argument("conversation_id")
    p.set_defaults(func=cmd_erase_conversation)
    p = erase.add_parser("tenant", help="every conversation of a tenant")
    p.add_argument("tenant_id")
    p.add_argument("--yes", action="store_true")
    p.set_defaults(func=cmd_erase_tenant)

    retention = sub.add_parser("retention", help="per-tenant retention").add_subparsers(
        dest="retention", required=True)
    p = retention.add_parser("set", help="keep a tenant's conversations DAYS days (0: for ever)")
    p.add_argument("tenant_id")
    p.add_argument("days", type=int)
    p.set_defaults(func=cmd_retention_set)
    p = retention.add_parser("list", help="the retention of every tenant that has one")
    p.set_defaults(func=cmd_retention_list)

    p = sub.add_parser("export", help="a tenant's conversations and messages, streamed")
    p.add_argument("--tenant", dest="tenant_id", required=True)
    p.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    p.add_argument("--from", dest="start", type=_aware_datetime,
                   help="conversations created at or after (ISO-8601)")
    p.add_argument("--to", dest="end", type=_aware_datetime,
                   help="conversations created before (ISO-8601)")
    p.add_argument("--output", "-o", help="a file (default: standard output)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("simulate", help="play agents against the running service, by task name")
    p.add_argument("--tenants", type=int, default=2)
    p.add_argument("--sessions", type=int, default=6)
    p.add_argument("--turns", type=int, default=5)
    p.add_argument("--keep-open", action="store_true", help="do not close the sessions")
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    ns = build_parser().parse_args(argv)
    ns.func(ns)


if __name__ == "__main__":
    main()
