"""Prometheus metrics of the service.

Workers run several processes, so the metrics use prometheus-client's multiprocess mode when
PROMETHEUS_MULTIPROC_DIR is set (`make run` sets it to var/metrics and empties it at start):
each process writes its own file, and the API's /metrics adds them up. Without it (tests,
one-process tools) they live in the process's default registry.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from conversation.domain.messages import parse_timestamp

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter(
    "conversation_dead_letters_total", "Tasks sent to the dead-letter queue", ["task"]
)
DEGRADED = Gauge(
    "conversation_degraded",
    "1 while the active store (Redis) is unreachable and PostgreSQL serves instead",
    multiprocess_mode="max",
)


MESSAGES_SAVED = Counter(
    "conversation_messages_saved_total", "Messages saved, by outcome", ["outcome"]
)
CONTEXT_SECONDS = Histogram(
    "conversation_context_seconds", "Time to build a context, by window", ["window"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
MIGRATIONS = Counter(
    "conversation_migrations_total", "Migrations to PostgreSQL, by outcome", ["outcome"]
)
QUARANTINED = Counter(
    "conversation_quarantined_total",
    "Conversations migration set aside because a store refused their data (each has a dead "
    "letter; they stay in Redis)",
)
CLEANUP_STEP_FAILURES = Counter(
    "conversation_cleanup_step_failures_total",
    "Steps of the cleanup beat job that failed (the other steps still ran)", ["step"]
)
WORKER_LOST = Counter(
    "conversation_worker_lost_total",
    "Tasks whose worker process died while running them, by what followed", ["outcome"]
)
MIGRATION_LAG = Histogram(
    "conversation_migration_lag_seconds",
    "From a session's close to its conversation landing in PostgreSQL",
    buckets=(5, 15, 30, 35, 45, 60, 120, 300, 900, 3600),
)
def observe_migration(outcome: Any) -> None:
    """A conversation landed in PostgreSQL: count it, and its lag since the session closed."""
    MIGRATIONS.labels("migrated").inc()
    if outcome.closed_at:
        lag = time.time() - parse_timestamp(outcome.closed_at).timestamp()
        MIGRATION_LAG.observe(max(0.0, lag))


API_SECONDS = Histogram(
    "conversation_api_request_seconds", "API request latency, by endpoint, method and status",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class LiveGauges(Collector):
    """Figures read when scraped, not counted by a process: queue depths and active sessions."""

    def __init__(self, queue_depths: Callable[[], dict[str, int]],
                 active_sessions: Callable[[], int]) -> None:
        self.queue_depths = queue_depths
        self.active_sessions = active_sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("conversation_queue_depth",
                                  "Messages waiting in each queue (the DLQ included)",
                                  labels=["queue"])
        try:
            for queue, count in sorted(self.queue_depths().items()):
                depth.add_metric([queue], count)
        except Exception as exc:  # a scrape must not fail because the broker is down
            log.warning("queue depths unavailable: %s", exc)
        yield depth
        sessions = GaugeMetricFamily("conversation_active_sessions",
                                     "Sessions with a conversation in Redis")
        try:
            sessions.add_metric([], self.active_sessions())
        except Exception as exc:
            log.warning("active sessions unavailable: %s", exc)
        yield sessions


def exposition(live: Collector | None = None) -> tuple[bytes, str]:
    """The text exposition of every process's metrics (and the live gauges), and its type."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry = CollectorRegistry()
    if directory:
        multiprocess.MultiProcessCollector(registry, path=directory)
    body = generate_latest(registry) if directory else generate_latest(REGISTRY)
    if live is not None:
        extra = CollectorRegistry()
        extra.register(live)
        body += generate_latest(extra)
    return body, CONTENT_TYPE_LATEST


def serve_worker_metrics(port: int) -> None:
    """Serve /metrics of every process of this worker (its pool children write to
    PROMETHEUS_MULTIPROC_DIR) on `port`: where workers run apart from the API (containers),
    Prometheus scrapes each worker directly."""
    from prometheus_client import start_http_server

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry = REGISTRY
    if directory:
        os.makedirs(directory, exist_ok=True)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    start_http_server(port, registry=registry)
    log.info("worker metrics on port %d", port)
