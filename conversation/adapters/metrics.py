"""Prometheus metrics of the service.

Workers run several processes, so the metrics use prometheus-client's multiprocess mode when
PROMETHEUS_MULTIPROC_DIR is set (`make run` sets it to var/metrics and empties it at start):
each process writes its own file, and the API's /metrics adds them up. Without it (tests,
one-process tools) they live in the process's default registry.
"""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)

DEAD_LETTERS = Counter(
    "conversation_dead_letters_total", "Tasks sent to the dead-letter queue", ["task"]
)
DEGRADED = Gauge(
    "conversation_degraded",
    "1 while the active store (Redis) is unreachable and PostgreSQL serves instead",
    multiprocess_mode="max",
)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every process's metrics, and its content type."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
