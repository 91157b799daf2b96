"""The fault proxy itself: each fault does to a real connection what it says, and a plan recovers on time."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.http_server import Reply, Script, serve
from tests.reliability.conftest import Figures
from tests.reliability.faultproxy import Fault, FaultProxy

BODY = b"x" * 20_000


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    script = Script()
    script.plan("/data", Reply(200, BODY))
    with serve(script) as url, FaultProxy(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as p:
        yield p


def _get(proxy: FaultProxy, timeout: float = 2.0) -> httpx.Response:
    # A fresh connection per request: each one meets the fault in force.
    with httpx.Client(timeout=timeout) as client:
        return client.get(f"http://127.0.0.1:{proxy.port}/data")


def test_each_fault_does_what_it_says(proxy: FaultProxy, figures: Callable[[str], Figures]) -> None:
    fig = figures("proxy-faults")
    assert _get(proxy).content == BODY

    proxy.set(Fault.refuse())
    with pytest.raises(httpx.ConnectError) as refused:
        _get(proxy)
    assert "refused" in str(refused.value).lower()
    with socket.socket() as raw, pytest.raises(ConnectionRefusedError):
        raw.connect(proxy.address)

    proxy.set(Fault.reset())
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)) as reset:
        _get(proxy)
    assert "reset" in str(reset.value).lower() or isinstance(reset.value, httpx.RemoteProtocolError)

    proxy.set(Fault.stall())
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        _get(proxy, timeout=0.2)
    assert time.monotonic() - started < 2

    proxy.set(Fault.cut(1000))
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        _get(proxy)
    assert proxy.stats.cut >= 1

    proxy.set(Fault.latency(0.05))
    started = time.monotonic()
    assert _get(proxy).content == BODY
    assert time.monotonic() - started >= 0.1  # the request and at least one answer chunk were delayed

    proxy.set(Fault.bandwidth(100_000))
    started = time.monotonic()
    assert _get(proxy).content == BODY
    assert time.monotonic() - started >= 0.15  # 20 kB at 100 kB/s

    proxy.set(Fault.passing())
    assert _get(proxy).content == BODY
    fig.tries = proxy.stats.accepted + 1  # +1: the refused raw connect
    fig.result = "refuse, reset, stall, cut, latency and bandwidth each seen by a real client; recovered"


def test_a_stall_delivers_held_bytes_when_it_ends(proxy: FaultProxy) -> None:
    with socket.create_connection(proxy.address, timeout=2) as sock:
        assert proxy.wait_for(lambda s: s.accepted == 1)
        proxy.set(Fault.stall())  # the open connection holds the request from here on
        sock.sendall(b"GET /data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(0.1)
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        proxy.set(Fault.passing())
        sock.settimeout(2)
        got = bytearray()
        while chunk := sock.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200")
    assert bytes(got).endswith(BODY)  # nothing lost while stalled


def test_plans_move_on_by_connections_and_by_seconds(proxy: FaultProxy) -> None:
    proxy.plan(Fault.reset(), Fault.reset(), Fault.passing(), after_connections=1)
    results = []
    for _ in range(4):
        try:
            results.append(_get(proxy).status_code)
        except httpx.TransportError:
            results.append("error")
    assert results == ["error", "error", 200, 200]

    proxy.plan(Fault.refuse(), Fault.passing(), after_seconds=0.2)
    with pytest.raises(httpx.ConnectError):
        _get(proxy)
    assert proxy.wait_for(lambda s: s.faults[-1] == "pass", timeout=5)
    deadline = time.monotonic() + 5
    while True:  # the listener comes back a moment after the switch: a short, bounded poll
        try:
            assert _get(proxy).status_code == 200
            break
        except httpx.ConnectError:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    with pytest.raises(ValueError, match="refuse step"):
        proxy.plan(Fault.refuse(), Fault.passing(), after_connections=1)


def test_reset_open_kills_pooled_connections(proxy: FaultProxy) -> None:
    with httpx.Client(timeout=2) as client:
        url = f"http://127.0.0.1:{proxy.port}/data"
        assert client.get(url).status_code == 200
        assert proxy.reset_open() == 1
        # The pooled connection is dead; httpx notices on reuse (and may or may not reconnect by itself).
        try:
            client.get(url)
        except httpx.TransportError:
            pass
    assert proxy.stats.reset >= 1
