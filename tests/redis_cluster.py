"""A real 3-primary Redis Cluster with one replica each, on 127.0.0.1, for the tests (Debian's redis-server).

Six ``redis-server --cluster-enabled yes`` processes on free ports, joined by ``redis-cli --cluster create
... --cluster-replicas 1 --cluster-yes``. The fixture waits (bounded) until every node says
``cluster_state:ok``, and stops every process afterwards.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisServer, _free_port, find_redis_server

__all__ = ["RedisCluster", "redis_cluster"]


def _redis_cli(server_binary: str) -> str:
    beside = Path(server_binary).with_name("redis-cli")
    found = str(beside) if beside.exists() else shutil.which("redis-cli")
    if not found:
        pytest.fail("no redis-cli beside redis-server: install Debian's redis-tools", pytrace=False)
    return found


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, as the cluster needs."""
    for _ in range(200):
        with socket.socket() as low, socket.socket() as high:
            low.bind(("127.0.0.1", 0))
            port: int = low.getsockname()[1]
            if port > 55535:
                continue
            try:
                high.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
    return _free_port()


class RedisCluster:
    """Six cluster-enabled redis-server processes: three primaries, three replicas."""

    def __init__(self, workdir: Path) -> None:
        self.binary = find_redis_server()
        self.cli = _redis_cli(self.binary)
        self.workdir = workdir
        self.ports = [_cluster_port() for _ in range(6)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0)

    def start(self) -> None:
        for port in self.ports:
            folder = self.workdir / str(port)
            folder.mkdir(parents=True, exist_ok=True)
            args = [
                self.binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "2000", "--dir", str(folder), "--logfile", str(folder / "redis.log"),
            ]  # fmt: skip
            self.processes[port] = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for port in self.ports:
            self._wait(lambda p=port: bool(self.client(p).ping()), f"node {port} to answer")
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run(
            [self.cli, "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
        for port in self.ports:
            self._wait(lambda p=port: self._ok(p), f"node {port} to see the cluster ok")
            self._wait(lambda p=port: self._synced(p), f"node {port} to be in sync with its primary")

    def _synced(self, port: int) -> bool:
        reply = self.client(port).execute_command("ROLE")
        return reply[0] in (b"master", "master") or reply[3] in (b"connected", "connected")

    def _ok(self, port: int) -> bool:
        info = self.client(port).cluster("INFO")
        if isinstance(info, dict):
            return str(info.get("cluster_state")) == "ok"
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    def _wait(self, check: object, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():  # type: ignore[operator]
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.02)  # waiting on real server processes

    def role(self, port: int) -> str:
        reply = self.client(port).execute_command("ROLE")
        first = reply[0]
        return first.decode() if isinstance(first, bytes) else str(first)

    def primary_of(self, key: str) -> int:
        """The port of the primary serving ``key``'s slot."""
        any_port = self.ports[0]
        slot = int(self.client(any_port).cluster("KEYSLOT", key))
        for entry in self.client(any_port).execute_command("CLUSTER", "SLOTS"):
            if entry[0] <= slot <= entry[1]:
                return int(entry[2][1])
        raise AssertionError(f"no node serves slot {slot}")

    def replica_of(self, primary: int) -> int:
        for port in self.ports:
            if port == primary:
                continue
            reply = self.client(port).execute_command("ROLE")
            if reply[0] in (b"slave", "slave") and int(reply[2]) == primary:
                return port
        raise AssertionError(f"no replica of {primary}")

    def failover(self, replica: int) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: a coordinated switch, the replica caught up first."""
        for attempt in range(5):
            # An election can expire without a majority while the nodes still gossip after start-up:
            # ask again, as an operator would.
            self.client(replica).cluster("FAILOVER")
            deadline = time.monotonic() + 6.0
            while time.monotonic() < deadline and self.role(replica) != "master":
                time.sleep(0.05)
            if self.role(replica) == "master":
                break
        self._wait(lambda: self.role(replica) == "master", f"{replica} to become primary")
        for port in self.ports:
            self._wait(lambda p=port: self._ok(p), f"node {port} to see the cluster ok")

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (no goodbye to the cluster: its peers find out by timeout)."""
        proc = self.processes[port]
        proc.kill()
        proc.wait(timeout=5)

    def wait_promoted(self, replica: int, dead: int) -> None:
        """Wait until ``replica`` has taken over from the killed ``dead`` and the others see the cluster ok."""
        self._wait(lambda: self.role(replica) == "master", f"{replica} to be promoted", timeout=60)
        for port in self.ports:
            if port != dead:
                self._wait(lambda p=port: self._ok(p), f"node {port} to see the cluster ok", timeout=60)

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
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A fresh 3-primary, 3-replica Redis Cluster on 127.0.0.1 for one test."""
    cluster = RedisCluster(tmp_path / "cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


_ = RedisServer  # the single-server fixture lives beside this one
