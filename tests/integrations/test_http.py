"""The httpx transports and the requests adapter against a real scripted server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from bounceback import Backoff
from bounceback.integrations._http import breaker_key, classify_status, redact_url
from bounceback.integrations._httpx import AsyncRecoveringTransport, RecoveringTransport
from bounceback.integrations._requests import RecoveringAdapter
from bounceback.testing import FakeClock
from tests.http_server import Reply, Script, closed_port, serve

FAST = Backoff(initial=0.5, max_delay=4, jitter="none")


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def base(script: Script) -> Iterator[str]:
    with serve(script) as url:
        yield url


def client(clock: FakeClock, **options: object) -> httpx.Client:
    options.setdefault("breakers", False)
    options.setdefault("backoff", FAST)
    return httpx.Client(transport=RecoveringTransport(clock=clock, **options), timeout=2)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [408, 425, 500, 502, 504])
def test_transient_statuses_are_retried(script: Script, base: str, status: int) -> None:
    script.plan("/cfg", Reply(status), Reply(status), Reply(200, b"config"))
    clock = FakeClock()
    with client(clock, attempts=4) as c:
        response = c.get(f"{base}/cfg")
    assert (response.status_code, response.text) == (200, "config")
    assert script.count("/cfg") == 3
    assert clock.sleeps == [0.5, 1.0]


def test_retry_after_seconds_and_http_date_are_honoured(script: Script, base: str) -> None:
    clock = FakeClock()
    script.plan("/a", Reply(429, headers={"Retry-After": "3"}), Reply(200))
    when = format_datetime(datetime.fromtimestamp(clock.wall() + 7, tz=UTC), usegmt=True)
    script.plan("/b", Reply(503, headers={"Retry-After": when}), Reply(200))
    with client(clock, attempts=3) as c:
        assert c.get(f"{base}/a").status_code == 200
        assert c.get(f"{base}/b").status_code == 200
    # The HTTP-date is measured against the policy's clock, which the first wait moved on by 3 s.
    assert clock.sleeps == [3, 4]


def test_retry_after_is_capped_and_never_past_the_deadline(script: Script, base: str) -> None:
    script.plan("/slow", Reply(503, headers={"Retry-After": "3600"}), Reply(200))
    clock = FakeClock()
    with client(clock, attempts=3, max_retry_after=10) as c:
        assert c.get(f"{base}/slow").status_code == 200
    assert clock.sleeps == [10]
    script.plan("/slow2", Reply(503, headers={"Retry-After": "120"}), Reply(200))
    clock = FakeClock()
    with client(clock, attempts=3, deadline=60) as c:
        response = c.get(f"{base}/slow2")
    # the server asked for a wait past the deadline: give up at once with its answer
    assert response.status_code == 503
    assert clock.sleeps == []


def test_gives_up_with_the_last_response_and_permanent_statuses_are_not_retried(
    script: Script, base: str
) -> None:
    script.plan("/down", Reply(502, b"bad gateway"))
    script.plan("/auth", Reply(401, b"who are you"))
    clock = FakeClock()
    with client(clock, attempts=3) as c:
        down = c.get(f"{base}/down")
        auth = c.get(f"{base}/auth")
    assert (down.status_code, down.text) == (502, "bad gateway")
    assert script.count("/down") == 3
    assert auth.status_code == 401
    assert script.count("/auth") == 1


def test_only_idempotent_methods_are_retried(script: Script, base: str) -> None:
    script.plan("/order", Reply(503), Reply(200))
    clock = FakeClock()
    with client(clock, attempts=3) as c:
        assert c.post(f"{base}/order", content=b"x").status_code == 503
        assert script.count("/order") == 1
        script.plan("/order", Reply(503), Reply(200))
        keyed = c.post(f"{base}/order", content=b"x", headers={"Idempotency-Key": "k1"})
        assert keyed.status_code == 200
        assert c.put(f"{base}/order", content=b"y").status_code == 200


def test_connection_refused_is_retried_then_reraised() -> None:
    clock = FakeClock()
    with client(clock, attempts=3) as c, pytest.raises(httpx.ConnectError) as info:
        c.get(f"http://127.0.0.1:{closed_port()}/x")
    assert len(info.value.bounceback_attempts) == 3  # type: ignore[attr-defined]
    assert len(clock.sleeps) == 2


def test_connection_reset_mid_request_is_transient(script: Script, base: str) -> None:
    script.plan("/flap", Reply(reset=True), Reply(200, b"back"))
    clock = FakeClock()
    with client(clock, attempts=3) as c:
        assert c.get(f"{base}/flap").text == "back"
    assert script.count("/flap") == 2


def test_slow_device_times_out_then_answers(script: Script, base: str) -> None:
    script.plan("/slow", Reply(delay=2.0), Reply(200, b"late but fine"))
    clock = FakeClock()
    transport = RecoveringTransport(clock=clock, attempts=3, breakers=False, backoff=FAST)
    with httpx.Client(transport=transport, timeout=0.1) as c:
        assert c.get(f"{base}/slow").text == "late but fine"


def test_async_transport(script: Script, base: str) -> None:
    script.plan("/a", Reply(500), Reply(429, headers={"Retry-After": "2"}), Reply(200, b"done"))
    clock = FakeClock()

    async def main() -> str:
        transport = AsyncRecoveringTransport(clock=clock, attempts=4, breakers=False, backoff=FAST)
        async with httpx.AsyncClient(transport=transport, timeout=2) as c:
            return (await c.get(f"{base}/a")).text

    assert asyncio.run(main()) == "done"
    assert clock.sleeps == [0.5, 2]


def test_requests_adapter(script: Script, base: str) -> None:
    script.plan("/r", Reply(503, headers={"Retry-After": "1"}), Reply(200, b"via requests"))
    clock = FakeClock()
    with requests.Session() as session:
        session.mount("http://", RecoveringAdapter(clock=clock, attempts=3, breakers=False, backoff=FAST))
        response = session.get(f"{base}/r", timeout=2)
        assert response.text == "via requests"
        with pytest.raises(requests.ConnectionError):
            session.get(f"http://127.0.0.1:{closed_port()}/", timeout=2)
    assert clock.sleeps[0] == 1


def test_status_classification_and_helpers() -> None:
    verdict = classify_status(429, {"Retry-After": "5"})
    assert verdict is not None
    assert (verdict.kind.value, verdict.retry_after) == ("throttled", 5.0)
    assert classify_status(200, {}) is None
    assert breaker_key("http://127.0.0.1:8080/a/b?x=1", "host") == "http://127.0.0.1:8080"
    assert breaker_key("http://127.0.0.1:8080/a/b?x=1", "route") == "http://127.0.0.1:8080/a/b"
    assert redact_url("http://u:secret@127.0.0.1/p?token=x") == "http://***@127.0.0.1/p?…"


@given(st.text(max_size=60))
def test_status_classification_never_crashes_on_junk_headers(value: str) -> None:
    verdict = classify_status(503, {"Retry-After": value})
    assert verdict is not None
    assert verdict.retry_after is None or verdict.retry_after >= 0


def test_one_breaker_per_host_fails_fast_for_the_dead_host_only(script: Script, base: str) -> None:
    from bounceback import CircuitBreaker, CircuitOpenError

    clock = FakeClock()
    made: list[str] = []

    def factory(name: str) -> CircuitBreaker:
        made.append(name)
        return CircuitBreaker(name, min_calls=2, failure_rate=50, open_seconds=30, open_jitter=0, clock=clock)

    script.plan("/ok", Reply(200, b"fine"))
    dead = f"http://127.0.0.1:{closed_port()}/x"
    transport = RecoveringTransport(clock=clock, attempts=2, deadline=10, breakers=factory, backoff=FAST)
    with httpx.Client(transport=transport, timeout=2) as c:
        with pytest.raises(httpx.ConnectError):
            c.get(dead)
        # the dead host's breaker is open now: the next call is refused without touching the network
        with pytest.raises(CircuitOpenError) as info:
            c.get(dead)
        assert info.value.retry_after == pytest.approx(30, abs=1)
        assert c.get(f"{base}/ok").text == "fine"
    assert len(made) == 2
    assert made[0].startswith("http:http://127.0.0.1:")
