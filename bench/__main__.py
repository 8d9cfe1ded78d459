"""Benchmarks beside their anchors, measured in one run; writes BENCHMARKS.md.

    make bench                      # all
    python -m bench --only ingest   # one section; BENCH_N=5000 for a quicker run
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from config.settings import PROJECT_ROOT, Settings
from conversation.embedded import EmbeddedPostgres, EmbeddedRedis


@dataclass
class Row:
    area: str
    ours: str
    anchor: str
    ratio: float | None
    target: str
    met: bool | None


ROWS: list[Row] = []
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
WARMUP = 200


def report(row: Row) -> None:
    ROWS.append(row)
    ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
    verdict = {True: "met", False: "NOT met", None: "-"}[row.met]
    print(f"{row.area:<44} ours {row.ours:<24} anchor {row.anchor:<24} ratio {ratio:<8} "
          f"target {row.target} [{verdict}]", flush=True)


class Servers:
    """Embedded Redis and PostgreSQL for the run, under var/bench/."""

    def __init__(self) -> None:
        self.root = PROJECT_ROOT / "var" / "bench"
        shutil.rmtree(self.root, ignore_errors=True)
        self.redis = EmbeddedRedis(self.root / "redis", persist=False).start()
        self.postgres = EmbeddedPostgres(self.root / "postgres").start()
        from conversation.adapters.schema_migrations import upgrade

        upgrade(self.postgres.url)

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "redis_url": f"{self.redis.url}/0",
            "redis_key_prefix": f"b{uuid.uuid4().hex[:6]}:",
            "broker_url": f"{self.redis.url}/1",
            "result_backend": f"{self.redis.url}/2",
            "database_url": self.postgres.url,
            "database_replica_url": self.postgres.url,
            "var_dir": self.root,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.postgres.stop()
        self.redis.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def wait_drained(broker: redis.Redis, queue: str, timeout: float = 600.0) -> None:
    """Drained: nothing waiting in the queue and nothing delivered but unacknowledged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.llen(queue) == 0 and broker.hlen("unacked") == 0:
            return
        time.sleep(0.005)
    raise TimeoutError(f"{queue} not drained in {timeout}s")


def timed_ingest(settings: Settings, n: int, make_task: Callable[[int], tuple[str, dict]]) -> float:
    """Tasks per second from the first publish to the queue drained, on a fresh worker."""
    from tests.workers import producer, running_worker

    broker = redis.Redis.from_url(settings.broker_url or "")
    app = producer(settings)
    log = settings.var_dir / "bench-worker.log"
    with running_worker(settings, log, concurrency=2, name="bench", app_module="bench.noop_app"):
        # Warm up: the worker's processes load tiktoken, connect, compile scripts.
        for i in range(WARMUP):
            name, kwargs = make_task(-1 - i)
            app.send_task(name, kwargs=kwargs, queue="conversation.save")
        wait_drained(broker, "conversation.save")
        started = time.perf_counter()
        with app.producer_or_acquire() as publisher:
            for i in range(n):
                name, kwargs = make_task(i)
                app.send_task(name, kwargs=kwargs, queue="conversation.save", producer=publisher)
        published = time.perf_counter()
        wait_drained(broker, "conversation.save")
        print(f"  published {n} in {published - started:.2f}s, drained "
              f"{time.perf_counter() - published:.2f}s later", file=sys.stderr)
        elapsed = time.perf_counter() - started
    app.close()
    return n / elapsed


def bench_ingest(servers: Servers, n: int) -> None:
    """save_message against a no-op task, alternated over ROUNDS; the best of each counts
    (this machine's noise only ever slows a round down)."""
    noop_rates, save_rates = [], []
    for round_ in range(ROUNDS):
        settings = servers.settings()
        noop_rates.append(timed_ingest(settings, n, lambda i: ("bench.noop", {"i": i})))

        def save(i: int, round_: int = round_) -> tuple[str, dict]:
            return "conversation.save_message", {
                "tenant_id": "bench", "session_id": f"r{round_}-s{i % 500}", "agent_id": "bot",
                "role": "user" if i % 2 else "assistant",
                "content": f"Message {i}: where is my order, and when will it arrive?",
                "message_id": f"m-{i}",
            }

        save_rates.append(timed_ingest(settings, n, save))
        client = redis.Redis.from_url(settings.redis_url or "")
        stored = sum(
            client.llen(k) for k in client.scan_iter(f"{settings.redis_key_prefix}messages:*")
        )
        assert stored == n + WARMUP, f"expected {n + WARMUP} stored messages, found {stored}"
    noop_rate, save_rate = max(noop_rates), max(save_rates)
    ratio = save_rate / noop_rate
    report(Row("ingest: save_message, one task per message", f"{save_rate:,.0f} msg/s",
               f"{noop_rate:,.0f} no-op tasks/s", ratio, ">= 0.9x the no-op ceiling",
               ratio >= 0.9))


def write_markdown(path: Path, n: int) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"N = {n:,}. Each figure is measured beside its anchor in the same run "
        "(see ../shared/ANCHORS.md); compare ratios, not absolute numbers across runs.",
        "",
        "| area | ours | anchor | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        lines.append(f"| {row.area} | {row.ours} | {row.anchor} | {ratio} | {row.target} | {met} |")
    path.write_text("\n".join(lines) + "\n")


SECTIONS: dict[str, Callable[[Servers, int], None]] = {"ingest": bench_ingest}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument("-n", type=int, default=int(os.environ.get("BENCH_N", "20000")))
    ns = parser.parse_args()
    servers = Servers()
    try:
        for name in ns.only or list(SECTIONS):
            SECTIONS[name](servers, ns.n)
    finally:
        servers.stop()
    write_markdown(PROJECT_ROOT / "BENCHMARKS.md", ns.n)
    print("wrote BENCHMARKS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
