"""A real Sentinel-managed Redis on 127.0.0.1 for the tests: a primary, a replica and three Sentinels.

Debian's ``redis-server`` and ``redis-sentinel``; the Sentinels watch the service ``bbprimary`` with a
quorum of 2, declare a silent primary down after 500 ms and promote the replica. A missing binary fails the
test with what to install (``scripts/test.sh`` installs both).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.redis_server import _free_port, find_redis_server

__all__ = ["RedisSentinel", "redis_sentinel"]

SERVICE = "bbprimary"


def _sentinel_binary(server: str) -> str:
    beside = Path(server).with_name("redis-sentinel")
    found = str(beside) if beside.exists() else shutil.which("redis-sentinel")
    if not found:
        pytest.fail(
            "no redis-sentinel: the failover tests need it (`apt-get install redis-sentinel`)", pytrace=False
        )
    return found


class RedisSentinel:
    """A primary, one replica and three Sentinels, each a real process."""

    def __init__(self, workdir: Path) -> None:
        self.server = find_redis_server()
        self.sentinel = _sentinel_binary(self.server)
        self.workdir = workdir
        self.primary_port = _free_port()
        self.replica_port = _free_port()
        self.sentinel_ports = [_free_port() for _ in range(3)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/bbprimary``."""
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{SERVICE}"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0, socket_connect_timeout=1.0)

    def _server(self, port: int, *extra: str) -> None:
        folder = self.workdir / str(port)
        folder.mkdir(parents=True, exist_ok=True)
        args = [
            self.server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(folder), "--logfile", str(folder / "redis.log"), *extra,
        ]  # fmt: skip
        self.processes[port] = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self._server(self.primary_port)
        self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        for port in (self.primary_port, self.replica_port):
            self.wait(lambda p=port: bool(self.client(p).ping()), f"redis {port} to answer")
        self.wait(self._linked, "the replica to sync")
        for port in self.sentinel_ports:
            folder = self.workdir / f"s{port}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"
            conf.write_text(
                f"bind 127.0.0.1\nport {port}\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 500\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.processes[port] = subprocess.Popen(
                [self.sentinel, str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
        for port in self.sentinel_ports:
            self.wait(lambda p=port: self._knows_replica(p), f"sentinel {port} to find the replica")

    def _linked(self) -> bool:
        reply: Any = self.client(self.replica_port).execute_command("ROLE")
        return reply[3] in (b"connected", "connected")

    def _knows_replica(self, port: int) -> bool:
        replicas = self.client(port).execute_command("SENTINEL", "REPLICAS", SERVICE)
        return bool(replicas)

    def primary(self) -> int:
        """The port the Sentinels name as primary now."""
        host_port = self.client(self.sentinel_ports[0]).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
        )
        return int(host_port[1])

    def kill_primary(self) -> int:
        """SIGKILL the primary (a crash); return its port."""
        port = self.primary()
        proc = self.processes[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        return port

    def wait(self, check: Any, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.02)  # waiting on real server processes

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[RedisSentinel]:
    """A Sentinel-managed primary and replica on 127.0.0.1 for one test."""
    setup = RedisSentinel(tmp_path / "sentinel")
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()
