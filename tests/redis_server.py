"""A real Redis (or Valkey) server process for the tests, on 127.0.0.1 and a free port.

``redis_server`` gives each test a clean server: one process is shared by the session and flushed before
every test, because starting one costs about 0.1 s. ``own_redis_server`` gives a test a process of its own,
for tests that kill and restart it (:meth:`RedisServer.kill`, :meth:`RedisServer.restart`).

The binary is ``$BOUNCEBACK_REDIS_SERVER`` if set, else ``redis-server`` or ``valkey-server`` on the PATH,
else ``/usr/bin/redis-server``. A missing binary fails the test with a message saying what to install:
CI installs it, and a silent skip would hide that the shared-store tests did not run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

__all__ = ["RedisServer", "find_redis_server", "own_redis_server", "redis_server"]

_START_TIMEOUT = 10.0


def find_redis_server() -> str:
    """The path of a redis-server (or valkey-server) binary; fails the test with a clear message if none."""
    candidates = [os.environ.get("BOUNCEBACK_REDIS_SERVER", "")]
    candidates += [shutil.which("redis-server") or "", shutil.which("valkey-server") or ""]
    candidates.append("/usr/bin/redis-server")
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    pytest.fail(
        "no Redis server binary: the shared-store tests need a real one. Install it "
        "(`apt-get install redis-server`, or valkey-server) or set BOUNCEBACK_REDIS_SERVER to its path",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process without persistence (``--save '' --appendonly no``) in ``workdir``.

    A restart keeps the port, so clients configured with :attr:`url` reconnect to the new process; the new
    process starts empty, as a real server without persistence does after a crash.
    """

    def __init__(self, workdir: Path, binary: str | None = None, port: int | None = None) -> None:
        self.workdir = workdir
        self.binary = binary or find_redis_server()
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: object) -> redis.Redis:
        """A plain redis-py client for checks made by the test itself."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2.0, **options)  # type: ignore[arg-type]

    def start(self) -> None:
        """Start the process and wait (bounded) until it answers PING."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"redis-{self.starts}.log"
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(log),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.starts += 1
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
        deadline = time.monotonic() + _START_TIMEOUT
        try:
            while True:
                if self.process.poll() is not None:
                    text = log.read_text(errors="replace") if log.exists() else ""
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}: {text[-2000:]}")
                try:
                    probe.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(
                            f"redis-server did not answer on port {self.port} in time"
                        ) from None
                    time.sleep(0.005)  # waiting on a real process: a short, bounded poll
        finally:
            probe.close()

    def kill(self) -> None:
        """SIGKILL the process (a crash: no shutdown, nothing saved) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """SIGKILL the process and start a new, empty one on the same port."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Stop the process: SIGTERM, then SIGKILL if it lingers."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def _session_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_server(_session_redis: RedisServer) -> Iterator[RedisServer]:
    """A running Redis server with an empty database (shared by the session, flushed for each test)."""
    server = _session_redis
    if server.process is None or server.process.poll() is not None:
        server.start()  # a test killed it: bring it back for the next one
    client = server.client()
    try:
        client.flushall()
        client.script_flush()
    finally:
        client.close()
    yield server


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server process for this test alone, free to be killed and restarted."""
    with RedisServer(tmp_path / "redis") as server:
        yield server
