"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright) against
`conversation run`'s whole stack, fed by the simulator through the broker: the page loads with
no console error, shows the figures the API computes, finds a planted phrase, opens its
transcript, and lists an agent's conversations when its bar is clicked. Screenshots go to
var/test-<pid>/artifacts/."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT, Settings
from conversation.bootstrap import Container
from conversation.client import ConversationClient
from conversation.embedded import free_port
from conversation.simulator import simulate
from tests.workers import producer, settings_env, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PLANTED = "the blue giraffe ate my invoice"
SESSIONS = 5


@pytest.fixture
def stack(settings: Settings, test_var_dir: Path) -> Iterator[tuple[Settings, str]]:
    """`conversation run` on this run's Redis and PostgreSQL (the URLs given, no embedded
    servers), with a short grace period and a fast beat; stopped by SIGTERM as Ctrl-C does."""
    settings = replace(settings, beat_interval_seconds=2, beat_lock_seconds=6)
    api_port, flower_port = free_port(), free_port()
    env = {**settings_env(settings), "API_PORT": str(api_port), "FLOWER_PORT": str(flower_port),
           "LOG_FORMAT": "console"}
    log_path = test_var_dir / f"run-{settings.redis_key_prefix.strip(':')}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "conversation.cli", "run"],
                                   cwd=PROJECT_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{api_port}"
    try:
        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"make run exited:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(answers, timeout=60, interval=0.3, what="the API of `conversation run`")
        yield settings, base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install chromium")
def test_the_dashboard_in_a_browser(stack, test_var_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    settings, base = stack
    # Traffic through the broker, as upstream services send it, plus a planted phrase.
    # Yesterday mid-morning (UTC), so no conversation straddles midnight whenever this runs.
    yesterday = datetime.now(UTC).replace(hour=10, minute=30) - timedelta(days=1)
    report = simulate(settings, tenants=1, sessions=SESSIONS, turns=3, seed=11,
                      around=yesterday)
    app = producer(settings)
    client = ConversationClient(app)
    client.save_message(tenant_id="demo", session_id="planted", agent_id="support-bot",
                        role="user", content=f"Help: {PLANTED}!", message_id="planted-1")
    # A tool call whose arguments and result look like markup: shown as text, never parsed.
    client.save_message(tenant_id="demo", session_id="planted", agent_id="support-bot",
                        role="assistant", content="", message_id="planted-2", tool_calls=[
                            {"id": "call_p", "type": "function", "function": {
                                "name": "lookup_invoice",
                                "arguments": '{"q": "<b id=\\"injected\\">giraffe</b>"}'}}])
    client.save_message(tenant_id="demo", session_id="planted", agent_id="support-bot",
                        role="tool", content="<img id=injected2> eaten", message_id="planted-3",
                        tool_call_id="call_p")
    container = Container(settings)

    def planted_saved() -> bool:
        conversation_id = container.active_store.session_conversation("demo", "planted")
        return bool(conversation_id) and container.active_store.message_count(
            conversation_id) == 3

    # The saves and the close travel on different queues, so a worker may take the close
    # first: the session, with no conversation yet, had nothing to migrate, and the planted
    # conversation stayed active (never in PostgreSQL). Close it once its messages are in,
    # as a client closes a websocket after its last message.
    wait_until(planted_saved, timeout=30, what="the planted messages in Redis")
    client.session_closed(tenant_id="demo", session_id="planted")
    key = container.api_keys.create("demo", label="browser test")

    def persisted() -> bool:
        return len(container.repository.conversation_ids("demo")) >= SESSIONS + 1

    wait_until(persisted, timeout=60, what="every simulated conversation in PostgreSQL")
    headers = {"Authorization": f"Bearer {key}"}

    def rolled_up() -> dict | None:
        request = urllib.request.Request(f"{base}/api/conversations/stats/demo", headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            stats = json.loads(response.read())
        return stats if stats["totals"]["conversations"] >= SESSIONS + 1 else None

    stats = wait_until(rolled_up, timeout=60, what="beat's rollup of every conversation")
    assert report["messages_saved"] == SESSIONS * 3 * 2

    artifacts = test_var_dir / "artifacts"
    artifacts.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"{base}/dashboard")
            page.fill("#login-tenant", "demo")
            page.fill("#login-key", key)
            page.click("#login-form button")
            page.wait_for_selector("body[data-loaded=stats]", timeout=20_000)

            totals = stats["totals"]
            assert page.text_content("#kpi-conversations") == str(totals["conversations"])
            assert page.text_content("#kpi-messages") == str(totals["messages"])
            assert page.text_content("#kpi-dead-letters") == "0"
            drawn = page.evaluate("document.getElementById('chart-volume').data[0].y")
            assert sum(drawn) == totals["conversations"]
            agents = page.evaluate("document.getElementById('chart-agents').data[0].y")
            assert sorted(agents) == sorted(a["agent_id"] for a in stats["agents"])
            page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

            # A real click on an agent's bar lists that agent's conversations.
            # Plotly listens on its drag layer above the bars: click where the bar is drawn.
            bar = page.locator("#chart-agents .bars .point path").first.bounding_box()
            assert bar is not None
            x, y = bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] / 2
            page.mouse.move(x, y)
            page.mouse.click(x, y)
            page.wait_for_function("document.getElementById('list-title')"
                                   ".textContent.startsWith('Agent ')", timeout=10_000)
            clicked = page.text_content("#list-title").removeprefix("Agent ")
            page.wait_for_selector("#list li", timeout=10_000)
            expected = next(a for a in stats["agents"] if a["agent_id"] == clicked)
            page.wait_for_function(
                f"document.querySelectorAll('#list li').length === {expected['conversations']}",
                timeout=10_000)

            # And a day's bar lists the conversations started that day.
            day_bar = page.locator("#chart-volume .bars .point path").first.bounding_box()
            assert day_bar is not None
            x, y = day_bar["x"] + day_bar["width"] / 2, day_bar["y"] + day_bar["height"] * 0.75
            page.mouse.move(x, y)
            page.mouse.click(x, y)
            page.wait_for_function("document.getElementById('list-title')"
                                   ".textContent.startsWith('Started ')", timeout=10_000)
            day = page.text_content("#list-title").removeprefix("Started ")
            started = next(p["conversations"] for p in stats["series"] if p["period"] == day)
            page.wait_for_function(
                f"document.querySelectorAll('#list li').length === {started}", timeout=10_000)

            page.fill("#search-q", "blue giraffe")
            page.click("#search-form button")
            page.wait_for_selector("body[data-search='1']", timeout=10_000)
            marked = page.eval_on_selector_all("#list li mark", "ms => ms.map(m => m.textContent)")
            assert [m.lower() for m in marked] == ["blue", "giraffe"]
            page.click("#list li")
            page.wait_for_selector("body[data-transcript]", timeout=10_000)
            assert PLANTED in page.text_content("#transcript")
            # The call's name and arguments, its result under it, all as text.
            call = page.locator("#transcript .tool-call[data-call-id='call_p']")
            assert call.locator(".tool-name").text_content() == (
                'lookup_invoice({"q": "<b id=\\"injected\\">giraffe</b>"})')
            assert call.locator(".tool-result").text_content() == "→ <img id=injected2> eaten"
            assert page.locator("#injected, #injected2").count() == 0
            page.screenshot(path=str(artifacts / "dashboard-search.png"), full_page=True)
        finally:
            browser.close()
            app.close()
            container.close()
    assert problems == [], problems
    if os.environ.get("UPDATE_README_SCREENSHOT"):
        shutil.copy(artifacts / "dashboard.png", PROJECT_ROOT / "docs" / "dashboard.png")
