"""The Celery app. Its configuration is read lazily, so importing this connects to nothing."""
from __future__ import annotations

import sys
from typing import Any

from celery import Celery, signals

from config.logging import bind_task, configure_logging, unbind_task
from config.settings import Settings
from conversation.adapters.metrics import serve_worker_metrics
from tasks.serialization import use_fast_json

use_fast_json()
# A hostile payload nested 1,000 deep must reach validation (and the dead-letter queue), not
# crash the worker: the prefork pool pickles task arguments recursively, about three frames a
# level, past Python's default limit of 1,000.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
app = Celery("conversation")
app.config_from_object("tasks.celeryconfig")
app.autodiscover_tasks(["tasks"], related_name="conversation_tasks", force=True)
app.autodiscover_tasks(["tasks"], related_name="erasure_tasks", force=True)


@signals.setup_logging.connect
def _structured_logs(loglevel: Any = None, **_: Any) -> None:
    """Connected, so Celery leaves logging to us: structlog, JSON unless LOG_FORMAT=console."""
    configure_logging(level=loglevel)


@signals.worker_init.connect
def _metrics_endpoint(**_: Any) -> None:
    """METRICS_PORT set: this worker serves its processes' metrics (deploy/k8s does)."""
    port = Settings.from_env().metrics_port
    if port:
        serve_worker_metrics(port)


@signals.task_prerun.connect
def _bind(task_id: str | None = None, task: Any = None, kwargs: Any = None, **_: Any) -> None:
    bind_task(task_id or "", getattr(task, "name", ""), kwargs if isinstance(kwargs, dict) else {})


@signals.task_postrun.connect
def _unbind(**_: Any) -> None:
    unbind_task()
