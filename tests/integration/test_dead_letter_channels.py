"""Dead-letter channels on real servers: the alert webhook, the operator CLI."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client import REGISTRY

from config.settings import Settings
from conversation import cli
from conversation.adapters.dead_letters import DeadLetter, DeadLetterOffice

pytestmark = pytest.mark.integration


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []
    failures_left = 1  # the first post fails: the office must retry

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if Hook.failures_left:
            Hook.failures_left -= 1
            self.send_response(503)
        else:
            Hook.received.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_alert_hook_is_posted_with_retries_and_the_counter_counts(container) -> None:
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        office = DeadLetterOffice(container.engine, container.settings.broker_url or "",
                                  f"http://127.0.0.1:{server.server_port}/alerts")
        before = REGISTRY.get_sample_value(
            "conversation_dead_letters_total", {"task": "conversation.hook_test"}) or 0
        office.send(DeadLetter(task_name="conversation.hook_test", kwargs={"tenant_id": "t"},
                               error="ValueError: boom", queue="conversation.save"))
    finally:
        server.shutdown()
        thread.join(10)
    assert [(h["event"], h["task_name"], h["error"]) for h in Hook.received] == [
        ("dead_letter", "conversation.hook_test", "ValueError: boom")]
    after = REGISTRY.get_sample_value(
        "conversation_dead_letters_total", {"task": "conversation.hook_test"})
    assert after == before + 1


def test_operator_cli_lists_and_purges_dead_letters(
    settings: Settings, container, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # noqa: ANN001
    for name, value in (("REDIS_URL", settings.redis_url), ("DATABASE_URL", settings.database_url),
                        ("CELERY_BROKER_URL", settings.broker_url),
                        ("CELERY_RESULT_BACKEND", settings.result_backend)):
        monkeypatch.setenv(name, value or "")
    container.dead_letters.send(DeadLetter(
        task_name="conversation.save_message", kwargs={"tenant_id": "cli"},
        error="InvalidPayload: x", queue="conversation.save"))
    capsys.readouterr()
    cli.main(["dlq", "list", "--limit", "500"])
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(row["kwargs"] == {"tenant_id": "cli"} for row in listed)
    cli.main(["dlq", "purge"])
    cli.main(["dlq", "list"])
    assert capsys.readouterr().out.strip() == ""
