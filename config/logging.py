"""Structured logs (structlog): JSON lines in production, readable lines under `make run`.

The service's modules log through the standard library; a structlog formatter on the root
logger renders every record, theirs and the libraries', with the context bound to the current
task (task id, tenant, conversation, session) merged in.
"""
from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

from config.settings import Settings

FORMATS = ("json", "console")


# Celery logs two INFO lines for every task: "received" (celery.worker.strategy) and
# "succeeded in ...: <result>" (celery.app.trace). At a worker's 700-900 tasks a second that
# is ~1,600 lines a second, each rendered by structlog and written: measured under `make run`,
# a quarter of a save_message's cost or more (BENCHMARKS.md), and for get_context the success
# line renders part of the context besides. They say nothing a dashboard does not: Flower
# lists every task (its events), the metrics count them, and a failure, a retry or a dead
# letter is still logged (WARNING/ERROR, and the retry line at INFO). So they are off by
# default, on purpose; LOG_EVERY_TASK=true brings them back (debugging one worker).
TASK_LINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


class _NotTaskSuccess(logging.Filter):
    """Drops Celery's per-task success line, keeps the rest of celery.app.trace (retries,
    failures)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Task %(name)s[%(id)s] succeeded"))


def log_every_task(enabled: bool) -> None:
    """Celery's per-task INFO lines on or off (see TASK_LINE_LOGGERS)."""
    strategy, trace = (logging.getLogger(name) for name in TASK_LINE_LOGGERS)
    # The strategy checks its level once, when the worker starts consuming: at WARNING it
    # skips even building the line.
    strategy.setLevel(logging.NOTSET if enabled else logging.WARNING)
    for existing in [f for f in trace.filters if isinstance(f, _NotTaskSuccess)]:
        trace.removeFilter(existing)
    if not enabled:
        trace.addFilter(_NotTaskSuccess())


def configure_logging(fmt: str | None = None, level: str | int | None = None,
                      every_task: bool | None = None) -> None:
    """What is not given comes from the settings (LOG_FORMAT, LOG_LEVEL, LOG_EVERY_TASK)."""
    if fmt is None or level is None or every_task is None:
        settings = Settings.from_env()
        configure_logging(fmt or settings.log_format, level or settings.log_level,
                          settings.log_every_task if every_task is None else every_task)
        return
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else _keep,
            renderer,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    log_every_task(every_task)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _keep(logger: Any, name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return event  # the console renderer prints tracebacks itself


TASK_FIELDS = ("tenant_id", "conversation_id", "session_id")


def bind_task(task_id: str, task_name: str, kwargs: dict[str, Any]) -> None:
    """Bind a task's identity to every line it logs (cleared by `unbind_task`)."""
    structlog.contextvars.clear_contextvars()
    context: dict[str, Any] = {"task_id": task_id, "task": task_name}
    for field in TASK_FIELDS:
        value = kwargs.get(field)
        if isinstance(value, str):
            context[field] = value[:128]
    messages = kwargs.get("messages")
    if isinstance(messages, list):
        context["batch"] = len(messages)
    structlog.contextvars.bind_contextvars(**context)


def unbind_task() -> None:
    structlog.contextvars.clear_contextvars()
