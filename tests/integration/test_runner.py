"""The runner's supervisor with real processes (tiny stand-ins for worker, beat, API): it
restarts a process that exits, gives up once one keeps dying right after its start, SIGTERM and
SIGHUP (a closed terminal) stop everything, and a SIGKILLed runner leaves no process behind."""
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
    import json, sys
    from conversation.runner import Supervisor, stop_on_signals
    options = {"first_backoff": 0.05, **json.loads(sys.argv[2])}
    supervisor = Supervisor(json.loads(sys.argv[1]), {}, **options)
    def stop():
        supervisor.stopping = True
    stop_on_signals(stop)
    supervisor.start()
    code = supervisor.run()
    supervisor.stop()
    sys.exit(code)
""")


def supervise(programs: dict[str, list[str]], log: Path,
              **options: float) -> subprocess.Popen[bytes]:
    import json

    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", SUPERVISE, json.dumps(programs),
                                 json.dumps(options)],
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
    restarts = re.findall(r"doomed exited with code 3 after \d+ s: restarting it in", text)
    assert len(restarts) == 4, text  # deaths 1 to 4 restarted, the 5th gives up
    assert ("doomed exited with code 3: 5 deaths in a row, each within 60 s of its start, "
            "giving up") in text
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
    assert re.findall(r"one was killed by SIGKILL after \d+ s: restarting it in", text) != []
    assert "two" not in text
    wait_until(lambda: not any(processes_with(m, runner) for m in markers.values()), timeout=10,
               what="every process to be stopped")


def test_a_process_that_dies_after_running_a_while_is_restarted_and_sighup_stops_all(
        tmp_path: Path) -> None:
    """Each death after `stable_seconds` of running starts the count afresh: restarted for as
    long as it takes (here 6 times, with the first backoff each time). A closed terminal
    (SIGHUP) then stops everything, as Ctrl-C does."""
    marker = f"mortal-{os.getpid()}-{tmp_path.name}"
    log = tmp_path / "runner.log"
    mortal = [sys.executable, "-c", f"import sys, time; time.sleep(0.6); sys.exit(3)  # {marker}"]
    runner = supervise({"mortal": mortal}, log, stable_seconds=0.5)
    try:
        wait_until(lambda: len(re.findall(r"mortal exited with code 3 after \d+ s: restarting "
                                          r"it in 0.05 s \(early death 1 of 5", log.read_text()))
                   >= 6, timeout=60, what="six restarts")
        assert runner.poll() is None, log.read_text()
        runner.send_signal(signal.SIGHUP)
        assert runner.wait(timeout=30) == 0
    finally:
        end(runner)
    assert "giving up" not in log.read_text()
    wait_until(lambda: not processes_with(marker, runner), timeout=10,
               what="the process to be stopped")


def test_a_process_dying_soon_after_each_start_gives_up_whatever_the_backoff(
        tmp_path: Path) -> None:
    """The crash loop slower than the backoff (the old rule, 5 deaths within 60 s, restarted a
    process dying 12 s after each start for ever): 5 early deaths in a row give up."""
    log = tmp_path / "runner.log"
    slow = [sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(3)"]
    runner = supervise({"slow": slow}, log, stable_seconds=30, first_backoff=0.5)
    try:
        code = runner.wait(timeout=60)
    finally:
        end(runner)
    text = log.read_text()
    assert code == 1, text
    assert "slow exited with code 3: 5 deaths in a row, each within 30 s" in text


def test_a_killed_runner_leaves_no_process_behind(tmp_path: Path) -> None:
    """SIGKILL leaves the runner no chance to stop its children (in sessions of their own, no
    terminal signal reaches them): the kernel stops them (PR_SET_PDEATHSIG)."""
    markers = {name: f"{name}-{os.getpid()}-{tmp_path.name}" for name in ("api", "flower")}
    runner = supervise({name: sleeper(marker) for name, marker in markers.items()},
                       tmp_path / "runner.log")
    try:
        for marker in markers.values():
            wait_until(lambda m=marker: processes_with(m, runner), timeout=20,
                       what="the processes to start")
        runner.kill()
        runner.wait(10)
        wait_until(lambda: not any(processes_with(m, runner) for m in markers.values()),
                   timeout=10, what="every process to die with the runner")
    finally:
        end(runner)
        for marker in markers.values():
            for process in processes_with(marker, runner):
                process.kill()


def test_embedded_redis_has_its_own_session_and_dies_with_its_starter(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to its foreground process group: embedded Redis is out of it
    (the runner stops it last, after the workers); a SIGKILLed starter takes it along."""
    starter = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from conversation.embedded import EmbeddedRedis
            redis = EmbeddedRedis(Path({str(tmp_path / "redis")!r}), persist=False).start()
            print(redis.process.pid, flush=True)
            time.sleep(600)
        """)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        assert starter.stdout is not None
        redis = psutil.Process(int(starter.stdout.readline()))
        assert os.getsid(redis.pid) == redis.pid != os.getsid(starter.pid)
        starter.kill()
        starter.wait(10)
        redis.wait(10)  # psutil.TimeoutExpired if it outlived its starter
    finally:
        end(starter)


def test_embedded_postgres_has_its_own_session_and_dies_with_its_starter(tmp_path: Path) -> None:
    """As Redis: out of the terminal's process group, and gone with a SIGKILLed starter
    (fast shutdown), so a killed `make run` leaves no server behind."""
    from conversation.embedded import EmbeddedPostgres

    data_dir = tmp_path / "postgres"
    starter = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from pathlib import Path
            from conversation.embedded import EmbeddedPostgres
            EmbeddedPostgres(Path({str(data_dir)!r})).start()
            print("ready", flush=True)
            time.sleep(600)
        """)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        assert starter.stdout is not None
        assert starter.stdout.readline().strip() == b"ready"
        postmaster = psutil.Process(
            int((data_dir / "data" / "postmaster.pid").read_text().splitlines()[0]))
        assert os.getsid(postmaster.pid) != os.getsid(starter.pid)
        starter.kill()
        starter.wait(10)
        postmaster.wait(30)  # psutil.TimeoutExpired if it outlived its starter
    finally:
        end(starter)
        EmbeddedPostgres(data_dir).stop()  # only if it did outlive it


def test_embedded_json_names_the_broker_in_effect(test_var_dir: Path) -> None:
    """With CELERY_BROKER_URL set, `make run` still starts the embedded Redis as the active
    store, and var/embedded.json (which `make demo`, `dlq replay` and the simulator read)
    names the user's broker, not the embedded one that no worker consumes."""
    import json

    from config.settings import EMBEDDED_ENDPOINTS_FILE
    from conversation.runner import Runner

    var_dir = test_var_dir / "runner-endpoints"
    env = {"CONVERSATION_VAR_DIR": str(var_dir), "DATABASE_URL": "postgresql://unused/db",
           "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}
    runner = Runner(env, grace_seconds=None)
    try:
        runner.start_servers()
        written = json.loads((var_dir / EMBEDDED_ENDPOINTS_FILE).read_text())
    finally:
        assert runner.redis is not None
        runner.redis.stop()
    assert "CELERY_BROKER_URL" not in written
    assert written["CELERY_RESULT_BACKEND"].endswith("/2")
    assert env["CELERY_BROKER_URL"].startswith("amqp://")
