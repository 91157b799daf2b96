"""The Redis error pack against a real redis-server on 127.0.0.1: each fault provoked for real."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bounceback import ErrorKind
from bounceback.classify import classify
from bounceback.testing import FakeClock
from tests.integrations.packs_support import clear_on_first_wait, free_port, guidance_text, policy, ticket
from tests.redis_server import RedisServer


def _client(port: int, **options: Any) -> redis.Redis:
    # redis-py retries by itself (3 times, with real sleeps) unless told not to: bounceback does it here.
    return redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0), **options)


def _error(fn: Any) -> BaseException:
    with pytest.raises(redis.RedisError) as caught:
        fn()
    return caught.value


def test_wrongtype_is_permanent_with_guidance_naming_the_server(redis_server: RedisServer) -> None:
    client = _client(redis_server.port)
    client.set("line1:temp", "21.5")
    clock = FakeClock()
    calls = []

    def push() -> Any:
        calls.append(1)
        return client.lpush("line1:temp", "22.0")

    info = policy(clock).call(push)
    assert len(calls) == 1 and clock.sleeps == []  # not retried
    assert info.classification.kind is ErrorKind.PERMANENT
    assert "WRONGTYPE" in info.classification.reason
    t = ticket(info, clock)
    assert t.topic == "redis-wrong-type"
    assert t.facts["redis_error"] == "WRONGTYPE"
    assert "TYPE <key>" in guidance_text(t)


def test_noscript_is_permanent(redis_server: RedisServer) -> None:
    client = _client(redis_server.port)
    err = _error(lambda: client.evalsha("0" * 40, 0))
    assert classify(err).kind is ErrorKind.PERMANENT
    assert "NOSCRIPT" in classify(err).reason


def test_wrong_password_is_permanent(own_redis_server: RedisServer) -> None:
    own_redis_server.client().config_set("requirepass", "s3cret")
    err = _error(lambda: _client(own_redis_server.port, password="wrong").ping())
    assert classify(err).kind is ErrorKind.PERMANENT
    clock = FakeClock()
    info = policy(clock).call(lambda: _client(own_redis_server.port).get("x"))
    assert info.classification.kind is ErrorKind.PERMANENT  # NOAUTH
    t = ticket(info, clock)
    assert t.topic == "redis-auth"
    assert "ACL" in guidance_text(t)


def test_busy_script_is_transient_and_recovers_when_the_script_is_killed(
    own_redis_server: RedisServer,
) -> None:
    admin = own_redis_server.client()
    admin.config_set("busy-reply-threshold", 50)  # ms before others get BUSY (lua-time-limit)
    started = threading.Event()

    def runaway() -> None:
        started.set()
        try:
            _client(own_redis_server.port).eval("while true do end", 0)
        except redis.ResponseError:
            pass  # killed by SCRIPT KILL, as intended

    worker = threading.Thread(target=runaway)
    worker.start()
    started.wait(5)
    probe = _client(own_redis_server.port)
    # The script runs for real: wait (bounded) until the server answers BUSY to everyone else.
    busy = None
    for _ in range(400):
        try:
            probe.ping()
        except redis.ResponseError as exc:
            busy = exc
            break
        threading.Event().wait(0.01)
    assert busy is not None and str(busy).startswith("BUSY")
    assert classify(busy).kind is ErrorKind.TRANSIENT

    clock = FakeClock()

    def kill_script() -> None:
        _client(own_redis_server.port).script_kill()
        worker.join(10)  # the script's own client got its answer: the server is free again

    clear_on_first_wait(clock, kill_script)
    assert policy(clock).call(lambda: probe.set("k", "v")) is True
    assert len(clock.sleeps) == 1


def test_busy_guidance() -> None:
    err = redis.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL.")
    clock = FakeClock()
    info = policy(clock, attempts=2).call(lambda: (_ for _ in ()).throw(err))
    t = ticket(info, clock)
    assert t.topic == "redis-busy"
    assert "SCRIPT KILL" in guidance_text(t)


def test_server_down_is_transient_and_recovers_when_it_is_back(own_redis_server: RedisServer) -> None:
    client = _client(own_redis_server.port, socket_connect_timeout=1)
    own_redis_server.kill()
    err = _error(client.ping)
    assert isinstance(err, redis.ConnectionError)
    assert classify(err).kind is ErrorKind.TRANSIENT
    clock = FakeClock()
    clear_on_first_wait(clock, own_redis_server.start)
    assert policy(clock).call(client.ping) is True
    assert len(clock.sleeps) == 1


def test_server_down_guidance_names_the_address(own_redis_server: RedisServer) -> None:
    own_redis_server.kill()
    clock = FakeClock()
    info = policy(clock, attempts=2).call(_client(own_redis_server.port).ping)
    t = ticket(info, clock)
    assert t.topic == "connection-refused"
    assert f"127.0.0.1:{own_redis_server.port}" in guidance_text(t)


def test_timeout_is_transient(redis_server: RedisServer) -> None:
    slow = _client(redis_server.port, socket_timeout=0.05)
    err = _error(lambda: slow.blpop(["nothing-here"], timeout=1))
    assert isinstance(err, redis.TimeoutError)
    assert classify(err).kind is ErrorKind.TRANSIENT


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        # The server's own words, parsed as redis-py parses them (all but TRYAGAIN, which needs a slot
        # migration, are also provoked for real in the tests below).
        ("LOADING Redis is loading the dataset in memory", ErrorKind.TRANSIENT),
        ("TRYAGAIN Multiple keys request during rehashing of slot", ErrorKind.TRANSIENT),
        ("CLUSTERDOWN The cluster is down", ErrorKind.TRANSIENT),
        ("READONLY You can't write against a read only replica.", ErrorKind.TRANSIENT),
        ("OOM command not allowed when used memory > 'maxmemory'.", ErrorKind.PERMANENT),
        ("ERR unknown command 'FLY'", ErrorKind.PERMANENT),
    ],
)
def test_reply_codes_as_redis_py_parses_them(reply: str, kind: ErrorKind) -> None:
    from redis._parsers.base import BaseParser

    err = BaseParser.parse_error(reply)
    assert classify(err).kind is kind


def test_clusterdown_is_transient_and_recovers_when_the_slots_are_served(tmp_path: Path) -> None:
    from tests.redis_server import find_redis_server

    port = free_port()
    args = [
        find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
        "--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf"), "--dir", str(tmp_path),
        # The cluster bus listens on port + 10000 unless told otherwise, past 65535 for a high free port.
        "--cluster-port", str(free_port()),
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        node = _client(port, socket_timeout=2)
        for _ in range(500):  # the real process starts: a short, bounded poll
            try:
                node.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.01)
        # A cluster node that serves no hash slot answers CLUSTERDOWN to every key, for real.
        err = _error(lambda: node.get("line1:temp"))
        assert (
            str(err).startswith("Hash slot not served")
            or "CLUSTERDOWN" in repr(err)
            or isinstance(err, redis.exceptions.ClusterDownError)
        )
        assert classify(err).kind is ErrorKind.TRANSIENT

        def serve_slots() -> None:
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            for _ in range(500):
                if b"cluster_state:ok" in node.execute_command("CLUSTER", "INFO"):
                    return
                time.sleep(0.01)

        clock = FakeClock()
        clear_on_first_wait(clock, serve_slots)
        assert policy(clock).call(lambda: node.get("line1:temp")) is None
        assert len(clock.sleeps) == 1
        clock = FakeClock()
        t = ticket(policy(clock, attempts=1).call(lambda: (_ for _ in ()).throw(err)), clock)
        assert t.topic == "redis-cluster"
    finally:
        process.terminate()
        process.wait(10)


def test_loading_is_transient_and_recovers_when_the_data_set_is_loaded(tmp_path: Path) -> None:
    from tests.redis_server import find_redis_server

    port = free_port()

    def start(*extra: str) -> subprocess.Popen[bytes]:
        args = [find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path),
                "--appendonly", "no", "--save", "", *extra]  # fmt: skip
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_until(ready: Any) -> None:
        for _ in range(1000):  # a real process: a short, bounded poll
            try:
                if ready():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.01)
        raise AssertionError("redis-server did not get ready")

    process = start()
    try:
        client = _client(port, socket_timeout=2)
        wait_until(client.ping)
        with client.pipeline(transaction=False) as pipe:
            for i in range(5000):
                pipe.set(f"tag:{i}", i)
            pipe.execute()
        client.save()
        process.terminate()
        process.wait(10)
        # Restarted on its data set, slowed down so the loading lasts long enough to be seen (about 0.5 s).
        process = start("--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024")
        loading: list[BaseException] = []

        def answers_loading() -> bool:
            try:
                client.ping()
            except redis.exceptions.BusyLoadingError as exc:
                loading.append(exc)
                return True
            return False

        wait_until(answers_loading)
        assert classify(loading[0]).kind is ErrorKind.TRANSIENT
        clock = FakeClock()
        clear_on_first_wait(clock, lambda: wait_until(client.ping))
        assert policy(clock).call(lambda: client.get("tag:4999")) == b"4999"
        assert len(clock.sleeps) == 1
        clock = FakeClock()
        t = ticket(policy(clock, attempts=1).call(lambda: (_ for _ in ()).throw(loading[0])), clock)
        assert t.topic == "redis-busy"
        assert "still loading" in guidance_text(t)
    finally:
        process.terminate()
        process.wait(10)


def test_readonly_and_masterdown_replicas_are_transient_and_recover_on_failover(
    own_redis_server: RedisServer, tmp_path: Path
) -> None:
    from tests.redis_server import find_redis_server

    port = free_port()
    args = [find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(tmp_path), "--replicaof", "127.0.0.1", str(own_redis_server.port)]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        replica = _client(port, socket_timeout=2)
        for _ in range(500):  # the real process starts: a short, bounded poll
            try:
                replica.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.01)
        # A write to a replica is refused with READONLY, as after a fail-over the client has not noticed yet.
        readonly = _error(lambda: replica.set("k", "v"))
        assert isinstance(readonly, redis.exceptions.ReadOnlyError)
        assert classify(readonly).kind is ErrorKind.TRANSIENT
        clock = FakeClock()
        t = ticket(policy(clock, attempts=1).call(lambda: (_ for _ in ()).throw(readonly)), clock)
        assert t.topic == "redis-cluster"
        # A replica that may not serve stale data answers MASTERDOWN while its master is gone.
        replica.config_set("replica-serve-stale-data", "no")
        own_redis_server.kill()
        masterdown = None
        for _ in range(500):
            try:
                replica.get("k")
            except redis.exceptions.MasterDownError as exc:
                masterdown = exc
                break
            except redis.ResponseError:
                pass
            time.sleep(0.01)
        assert masterdown is not None
        assert classify(masterdown).kind is ErrorKind.TRANSIENT
        # Fail-over: the replica is promoted; the write that was refused now succeeds.
        clock = FakeClock()
        clear_on_first_wait(clock, lambda: replica.execute_command("REPLICAOF", "NO", "ONE"))
        assert policy(clock).call(lambda: replica.set("k", "v")) is True
        assert len(clock.sleeps) == 1
    finally:
        process.terminate()
        process.wait(10)


def test_out_of_memory_is_permanent_with_memory_guidance(own_redis_server: RedisServer) -> None:
    client = _client(own_redis_server.port, socket_timeout=2)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")  # below what the server already uses: every write is refused
    clock = FakeClock()
    info = policy(clock).call(lambda: client.set("recipe:17", "x" * 10_000))
    assert isinstance(info.error, redis.exceptions.OutOfMemoryError)
    assert info.classification.kind is ErrorKind.PERMANENT and clock.sleeps == []
    t = ticket(info, clock)
    assert t.topic == "redis-out-of-memory"
    assert "maxmemory" in guidance_text(t)
