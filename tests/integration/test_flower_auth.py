"""`conversation flower` with FLOWER_BASIC_AUTH, as a real process on the run's Redis broker:
Flower takes the credentials from the environment (never from its command line, which `ps`
shows) and refuses requests without them."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

from config.settings import Settings
from conversation.embedded import free_port
from tests.workers import settings_env

pytestmark = pytest.mark.integration


def status(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials:
        request.add_header("Authorization", "Basic " + b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_flower_asks_for_the_credentials_it_reads_from_the_environment(
        settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {**settings_env(settings), "FLOWER_BASIC_AUTH": "ops:s3cret-Value"}
    log = (tmp_path / "flower.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "conversation.cli", "flower", "--address", "127.0.0.1",
         "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/workers"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                first = status(url)
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "flower.log").read_text()
                assert time.monotonic() < deadline, "Flower did not answer within 60 s"
                time.sleep(0.2)
        assert first == 401
        assert status(url, "ops:wrong") == 401
        assert status(url, "ops:s3cret-Value") == 200
        command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert b"flower" in command_line and b"s3cret" not in command_line
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
