"""HTTP through the fault proxy: the httpx transports against the test server and the demo fleet.

Retry waits run on a FakeClock (no real sleeping); the network faults are real: the proxy resets, refuses,
stalls, slows and cuts real TCP connections on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from bounceback import Backoff, BreakerState, CircuitBreaker, CircuitOpenError
from bounceback.demo._fleet import DEVICES, Fleet
from bounceback.events import EventBus
from bounceback.integrations._httpx import RecoveringTransport
from bounceback.testing import FakeClock
from tests.http_server import Reply, Script, serve
from tests.reliability.conftest import Figures, soak_size
from tests.reliability.faultproxy import Fault, FaultProxy

QUICK = Backoff(initial=0.1, max_delay=1, jitter="none")
BODY = b"payload-" * 2500  # 20 kB: several TCP chunks, so a cut lands mid-body


@pytest.fixture
def script() -> Script:
    s = Script()
    s.plan("/data", Reply(200, BODY))
    s.plan("/write", Reply(201, b"created"))
    return s


@pytest.fixture
def proxy(script: Script) -> Iterator[FaultProxy]:
    with serve(script) as url, FaultProxy(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as p:
        yield p


def _client(clock: Any, *, attempts: int = 5, timeout: float = 2.0, **options: Any) -> httpx.Client:
    options.setdefault("breakers", False)
    transport = RecoveringTransport(clock=clock, attempts=attempts, backoff=QUICK, bus=EventBus(), **options)
    return httpx.Client(transport=transport, timeout=timeout)


def test_resets_are_retried_until_the_network_recovers(
    proxy: FaultProxy, script: Script, figures: Callable[[str], Figures]
) -> None:
    fig = figures("http-reset-then-recover")
    tries = soak_size(20, 200)
    url = f"http://127.0.0.1:{proxy.port}/data"
    for i in range(tries):
        resets = i % 4  # 0 to 3 resets before the network comes back
        proxy.plan(*[Fault.reset()] * resets, Fault.passing(), after_connections=1)
        clock = FakeClock()
        with _client(clock) as client:  # a fresh pool: every attempt dials through the proxy
            response = client.get(url)
        assert response.status_code == 200
        assert response.content == BODY
        assert len(clock.sleeps) == resets
    # A reset happens before the proxy dials the server: each GET reached it exactly once.
    assert script.count("/data") == tries
    fig.tries = tries
    fig.result = f"all {tries} GETs answered in full after 0-3 resets; server saw each once"


def test_refusing_upstream_opens_the_breaker_then_it_closes(
    proxy: FaultProxy, figures: Callable[[str], Figures]
) -> None:
    fig = figures("http-refused-breaker")
    clock = FakeClock()
    breaker = CircuitBreaker(
        "http-refused", window=4, min_calls=4, open_seconds=10, half_open_calls=2, clock=clock, bus=EventBus()
    )
    url = f"http://127.0.0.1:{proxy.port}/data"
    with _client(clock, attempts=1, breakers=lambda _name: breaker) as client:
        proxy.set(Fault.refuse())
        for _ in range(4):
            with pytest.raises(httpx.ConnectError):
                client.get(url)
        assert breaker.state is BreakerState.OPEN
        dialled = proxy.stats.accepted
        started = time.monotonic()
        for _ in range(50):
            with pytest.raises(CircuitOpenError):
                client.get(url)
        fast = time.monotonic() - started
        assert proxy.stats.accepted == dialled  # refused without touching the network
        proxy.set(Fault.passing())
        clock.advance(10)
        assert client.get(url).status_code == 200
        assert client.get(url).status_code == 200
        assert breaker.state is BreakerState.CLOSED
    fig.tries = 4 + 50 + 2
    fig.result = (
        f"opened after 4 refusals; 50 calls refused in {fast * 1000:.1f} ms total; closed after 2 probes"
    )
    fig.note(rejections_ms=round(fast * 1000, 2))


def test_stalled_upstream_is_bounded_by_the_request_timeout(
    proxy: FaultProxy, script: Script, figures: Callable[[str], Figures]
) -> None:
    fig = figures("http-stall-timeout")
    url = f"http://127.0.0.1:{proxy.port}/data"
    clock = FakeClock()
    proxy.set(Fault.stall())
    started = time.monotonic()
    with _client(clock, attempts=3, timeout=0.1) as client, pytest.raises(httpx.ReadTimeout) as info:
        client.get(url)
    assert time.monotonic() - started < 3  # three bounded attempts, not a hang
    assert len(clock.sleeps) == 2
    assert "gave up after 3 attempt(s)" in "\n".join(info.value.__notes__)
    proxy.plan(Fault.stall(), Fault.stall(), Fault.passing(), after_connections=1)
    with _client(FakeClock(), attempts=4, timeout=0.1) as client:
        assert client.get(url).content == BODY
    fig.tries = 3 + 3
    fig.result = "3 stalled attempts ended by the 0.1 s timeout; then 2 stalls and a full answer"


def test_a_cut_answer_is_retried_for_get_and_never_for_post(
    proxy: FaultProxy, script: Script, figures: Callable[[str], Figures]
) -> None:
    fig = figures("http-cut-mid-response")
    tries = soak_size(10, 100)
    url = f"http://127.0.0.1:{proxy.port}"
    for _ in range(tries):
        # Cut inside the headers, then in the middle of the body: both are attempts that failed.
        proxy.plan(Fault.cut(40 if _ % 2 else 3000), Fault.passing(), after_connections=1)
        with _client(FakeClock()) as client:
            response = client.get(f"{url}/data")
        assert response.content == BODY  # never a truncated body handed back as complete
    assert proxy.stats.cut >= tries
    proxy.plan(Fault.cut(20), Fault.passing(), after_connections=1)
    with _client(FakeClock()) as client, pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.post(f"{url}/write", content=b"{}")
    assert script.count("/write") == 1  # a POST without Idempotency-Key is not sent twice
    fig.tries = tries + 1
    fig.result = (
        f"{tries} GETs cut in the headers or mid-body re-fetched in full; the cut POST was not repeated"
    )


def test_slow_calls_trip_the_breaker_and_a_capped_link_still_delivers(
    proxy: FaultProxy, figures: Callable[[str], Figures]
) -> None:
    fig = figures("http-slow-calls-breaker")
    # Real time here: slowness is what is measured. The delays are tens of milliseconds.
    breaker = CircuitBreaker(
        "http-slow",
        window=4,
        min_calls=4,
        slow_call_rate=50,
        slow_call_duration=0.05,
        open_seconds=60,
        bus=EventBus(),
        timers=False,
    )
    url = f"http://127.0.0.1:{proxy.port}/data"
    with _client(None, attempts=1, breakers=lambda _name: breaker) as client:
        proxy.set(Fault.latency(0.05))
        for _ in range(4):
            assert client.get(url).content == BODY  # slow, but answered
        assert breaker.state is BreakerState.OPEN
        assert breaker.metrics().slow_calls >= 2 if hasattr(breaker.metrics(), "slow_calls") else True
        with pytest.raises(CircuitOpenError):
            client.get(url)
    proxy.set(Fault.bandwidth(200_000))
    started = time.monotonic()
    with _client(FakeClock()) as client:
        assert client.get(url).content == BODY
    took = time.monotonic() - started
    assert took >= 0.08  # 20 kB at 200 kB/s
    fig.tries = 6
    fig.result = (
        f"4 slow answers opened the breaker; 20 kB over a 200 kB/s link arrived whole in {took:.2f} s"
    )


class _Ticking:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_demo_fleet_through_a_flaky_network(figures: Callable[[str], Figures]) -> None:
    fig = figures("http-demo-fleet")
    ticking = _Ticking()
    with Fleet(speed=100, clock=ticking) as fleet, FaultProxy(("127.0.0.1", fleet.port)) as proxy:
        outcomes: dict[str, object] = {}
        for device in DEVICES:
            clock = FakeClock()
            # The fleet's time moves with the client's virtual waits (scaled as the fleet is).
            clock.on_sleep = lambda s, speed=fleet.speed: setattr(ticking, "now", ticking.now + s / speed)
            url = fleet.url(device.name)
            if device.fault != "refusing":
                url = url.replace(f":{fleet.port}/", f":{proxy.port}/")
                # On top of the device's own trouble, the network resets its first connection.
                proxy.plan(Fault.reset(), Fault.passing(), after_connections=1)
            with _client(clock, attempts=14, breaker_per="route", breakers=True) as client:
                try:
                    outcomes[device.name] = client.get(url).status_code
                except httpx.TransportError as exc:
                    outcomes[device.name] = type(exc).__name__
    expected = {d.name: 200 for d in DEVICES}
    expected["valve-06"] = "ConnectError"
    expected["sensor-07"] = 401
    assert outcomes == expected
    fig.tries = sum(fleet.calls(d.name) for d in DEVICES) + proxy.stats.reset
    fig.result = "6 devices recovered through resets, 401 handed back at once, the switched-off valve refused"


def test_compressed_answers_survive_cuts_and_give_ups(figures: Callable[[str], Figures]) -> None:
    fig = figures("http-cut-mid-response")
    body = b'{"reading": 42}' * 2000
    script = Script()
    script.plan("/z", Reply(200, gzip.compress(body), {"Content-Encoding": "gzip"}))
    script.plan("/busy", Reply(503, gzip.compress(b"busy, try later"), {"Content-Encoding": "gzip"}))
    with serve(script) as url, FaultProxy(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as proxy:
        base = f"http://127.0.0.1:{proxy.port}"
        proxy.plan(Fault.cut(500), Fault.passing(), after_connections=1)
        with _client(FakeClock()) as client:
            assert client.get(f"{base}/z").content == body  # cut mid-body, retried, decoded once
        with _client(FakeClock(), attempts=2) as client:
            # Given back after the last attempt: still a readable answer, not a DecodingError.
            answer = client.get(f"{base}/busy")
        assert (answer.status_code, answer.content) == (503, b"busy, try later")
    fig.tries = 2
    fig.result = "gzip answers: a cut one re-fetched and decoded once; a 503 handed back after giving up still readable"
