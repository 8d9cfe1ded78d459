"""Structured logs: JSON lines carrying the task's identity; a readable form for terminals."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from config.logging import bind_task, configure_logging, unbind_task


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    unbind_task()


def test_json_lines_carry_the_task_context(restored_logging, capsys) -> None:  # noqa: ANN001
    configure_logging("json", "INFO")
    bind_task("t-1", "conversation.save_message",
              {"tenant_id": "acme", "session_id": "s-1", "content": "secret"})
    logging.getLogger("conversation.services.save").info("saved %d message(s)", 3)
    unbind_task()
    logging.getLogger("conversation.services.save").warning("after the task")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["event"] == "saved 3 message(s)" and first["level"] == "info"
    assert (first["task_id"], first["task"], first["tenant_id"], first["session_id"]) == (
        "t-1", "conversation.save_message", "acme", "s-1")
    assert "content" not in first  # payloads are not logged, identities are
    assert "task_id" not in second and second["level"] == "warning"


def test_console_lines_are_readable_and_a_bad_format_is_refused(
    restored_logging, capsys  # noqa: ANN001
) -> None:
    configure_logging("console", "INFO")
    bind_task("t-2", "conversation.cleanup", {"messages": [{}, {}]})
    logging.getLogger("x").info("hello")
    line = capsys.readouterr().err.strip()
    assert "hello" in line and "task_id=t-2" in line and "batch=2" in line
    assert not line.startswith("{")
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        configure_logging("xml")


def test_celerys_per_task_lines_are_off_unless_asked_for(restored_logging, capsys) -> None:  # noqa: ANN001
    """No line per task received or succeeded by default; a retry and a failure still log."""
    from celery.app.trace import LOG_RETRY, LOG_SUCCESS

    trace = logging.getLogger("celery.app.trace")
    strategy = logging.getLogger("celery.worker.strategy")
    context = {"name": "conversation.save_message", "id": "t-1", "runtime": 0.001,
               "return_value": None, "exc": "TimeoutError()"}
    try:
        configure_logging("json", "INFO", every_task=False)
        assert not strategy.isEnabledFor(logging.INFO)
        trace.info(LOG_SUCCESS, context)
        trace.info(LOG_RETRY, context)
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and "retry" in json.loads(lines[0])["event"]
        configure_logging("json", "INFO", every_task=True)
        assert strategy.isEnabledFor(logging.INFO)
        trace.info(LOG_SUCCESS, context)
        assert "succeeded" in capsys.readouterr().err
    finally:
        configure_logging("json", "INFO", every_task=False)


@pytest.mark.parametrize(("written", "level"), [("debug", logging.DEBUG),
                                                ("Warn", logging.WARNING),
                                                ("ERROR", logging.ERROR)])
def test_log_level_is_one_spelling_for_the_workers_and_the_api(
    restored_logging, monkeypatch, tmp_path, written: str, level: int  # noqa: ANN001
) -> None:
    """LOG_LEVEL goes to Celery's --loglevel in `conversation worker` and `beat` (any case,
    but no WARN) and to logging's setLevel in the API (upper case only): the one setting
    must start both at the same level."""
    from celery.bin.base import LOG_LEVEL as CELERY_LOG_LEVEL

    from config.settings import Settings

    monkeypatch.setenv("LOG_LEVEL", written)
    monkeypatch.setenv("CONVERSATION_VAR_DIR", str(tmp_path))
    assert CELERY_LOG_LEVEL.convert(Settings.from_env().log_level, None, None) == level
    configure_logging("json")  # the API's call (api/wsgi.py): the level from the settings
    assert logging.getLogger().level == level
