"""Structured logs (structlog): JSON lines in production, readable lines under `make run`.

The service's modules log through the standard library; a structlog formatter on the root
logger renders every record, theirs and the libraries', with the context bound to the current
task (task id, tenant, conversation, session) merged in.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import structlog

FORMATS = ("json", "console")


def configure_logging(fmt: str | None = None, level: str | int | None = None) -> None:
    fmt = fmt or os.environ.get("LOG_FORMAT", "json")
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
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _keep(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
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
