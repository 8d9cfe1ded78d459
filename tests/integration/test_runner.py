"""The runner's supervisor with real processes (tiny stand-ins for worker, beat, API): it
restarts a process that exits, gives up once one keeps dying, and SIGTERM stops everything."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from config.settings import PROJECT_ROOT
from tests.workers import wait_until

pytestmark = pytest.mark.integration

# The supervisor in a process of its own, as `conversation run` runs it, over the programs given
# as JSON: its signal handling is the runner's. Backoff is fast so the test takes seconds.
SUPERVISE = textwrap.dedent("""
    import json, signal, sys
    from conversation.runner import Supervisor
    supervisor = Supervisor(json.loads(sys.argv[1]), {}, first_backoff=0.05)
    def on_signal(signum, frame):
        supervisor.stopping = True
    signal.signal(signal.SIGTERM, on_signal)
    supervisor.start()
    code = supervisor.run()
    supervisor.stop()
    sys.exit(code)
""")


def supervise(programs: dict[str, list[str]], log: Path) -> subprocess.Popen[bytes]:
    import json

    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", SUPERVISE, json.dumps(programs)],
                                cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})


def sleeper(marker: str) -> list[str]:
    """A long-running stand-in that can be found by its command line."""
    return [sys.executable, "-c", f"import time; time.sleep(600)  # {marker}"]


def processes_with(marker: str, runner: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The live processes running `marker` (the runner's own command line names it too)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.pid == runner.pid or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_a_process_that_keeps_dying_makes_the_runner_give_up(tmp_path: Path) -> None:
    marker = f"steady-{os.getpid()}-{tmp_path.name}"
    log = tmp_path / "runner.log"
    runner = supervise({"steady": sleeper(marker),
                        "doomed": [sys.executable, "-c", "import sys; sys.exit(3)"]}, log)
    try:
        code = runner.wait(timeout=60)
    finally:
        end(runner)
    text = log.read_text()
    assert code == 1, text
    restarts = re.findall(r"doomed exited with code 3: restarting it in", text)
    assert len(restarts) == 4, text  # deaths 1 to 4 restarted, the 5th gives up
    assert "doomed exited with code 3: 5 deaths within 60 s, giving up" in text
    assert "steady" not in text  # the healthy process was never restarted...
    wait_until(lambda: not processes_with(marker, runner), timeout=10,
               what="the healthy process to be stopped")  # ...but stopped with the rest


def test_a_killed_process_comes_back_and_sigterm_stops_everything(tmp_path: Path) -> None:
    markers = {name: f"{name}-{os.getpid()}-{tmp_path.name}" for name in ("one", "two")}
    log = tmp_path / "runner.log"
    runner = supervise({name: sleeper(marker) for name, marker in markers.items()}, log)
    try:
        first = wait_until(lambda: processes_with(markers["one"], runner), timeout=20,
                           what="the first process")[0]
        first.kill()
        again = wait_until(lambda: [p for p in processes_with(markers["one"], runner)
                                    if p.pid != first.pid], timeout=20,
                           what="the first process to come back")
        assert len(again) == 1
        assert wait_until(lambda: processes_with(markers["two"], runner), what="the second")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 0
    finally:
        end(runner)
    text = log.read_text()
    assert re.findall(r"one was killed by SIGKILL: restarting it in", text) != []
    assert "two" not in text
    wait_until(lambda: not any(processes_with(m, runner) for m in markers.values()), timeout=10,
               what="every process to be stopped")
