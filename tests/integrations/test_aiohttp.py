"""aiohttp: the error pack (with guidance) and RecoveringMiddleware, against real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest

from bounceback import Backoff, ErrorKind
from bounceback.classify import classify
from bounceback.integrations import RecoveringMiddleware
from bounceback.testing import FakeClock
from tests.http_server import Reply, Script, closed_port, serve
from tests.integrations.packs_support import guidance_text, policy, ticket

T = TypeVar("T")
FAST = Backoff(initial=0.5, max_delay=4, jitter="none")


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def base(script: Script) -> Iterator[str]:
    with serve(script) as url:
        yield url


def run(work: Callable[[aiohttp.ClientSession], Awaitable[T]], *middlewares: Any) -> T:
    async def main() -> T:
        timeout = aiohttp.ClientTimeout(sock_connect=2, sock_read=2)
        async with aiohttp.ClientSession(timeout=timeout, middlewares=middlewares) as session:
            return await work(session)

    return asyncio.run(main())


def recovering(clock: FakeClock, **options: Any) -> RecoveringMiddleware:
    options.setdefault("breakers", False)
    options.setdefault("backoff", FAST)
    return RecoveringMiddleware(clock=clock, **options)


# The error pack: aiohttp's errors classified without any code from the user.


def _error(work: Callable[[aiohttp.ClientSession], Awaitable[Any]]) -> BaseException:
    async def catch(session: aiohttp.ClientSession) -> BaseException:
        try:
            await work(session)
        except aiohttp.ClientError as exc:
            return exc
        raise AssertionError("no error")

    return run(catch)


async def get_checked(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url, raise_for_status=True) as response:
        return await response.read()


def test_a_refused_connection_is_transient_with_its_address_in_the_guidance() -> None:
    port = closed_port()
    err = _error(lambda s: get_checked(s, f"http://127.0.0.1:{port}/cfg"))
    assert isinstance(err, aiohttp.ClientConnectorError)
    assert classify(err).kind is ErrorKind.TRANSIENT
    clock = FakeClock()
    t = ticket(policy(clock, attempts=1).call(lambda: (_ for _ in ()).throw(err)), clock)
    assert t.topic == "connection-refused"
    assert f"127.0.0.1:{port}" in guidance_text(t)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (503, ErrorKind.THROTTLED),
        (429, ErrorKind.THROTTLED),
        (502, ErrorKind.TRANSIENT),
        (404, ErrorKind.PERMANENT),
        (403, ErrorKind.PERMANENT),
    ],
)
def test_raise_for_status_errors_are_classified_by_status(
    script: Script, base: str, status: int, kind: ErrorKind
) -> None:
    script.plan("/cfg", Reply(status, headers={"Retry-After": "7"}))
    err = _error(lambda s: get_checked(s, f"{base}/cfg"))
    verdict = classify(err)
    assert verdict.kind is kind
    if kind is ErrorKind.THROTTLED:
        assert verdict.retry_after == 7


def test_raise_for_status_guidance_names_the_url(script: Script, base: str) -> None:
    script.plan("/cfg?token=abc", Reply(401))
    err = _error(lambda s: get_checked(s, f"{base}/cfg?token=abc"))
    clock = FakeClock()
    t = ticket(policy(clock).call(lambda: (_ for _ in ()).throw(err)), clock)
    assert t.topic == "authentication"
    assert t.facts["url"] == f"{base}/cfg"  # no query string: it may hold a secret
    assert "HTTP 401" in guidance_text(t)


def test_a_connection_cut_without_an_answer_is_transient(script: Script, base: str) -> None:
    script.plan("/cfg", Reply(reset=True))
    err = _error(lambda s: get_checked(s, f"{base}/cfg"))
    assert isinstance(err, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError))
    assert classify(err).kind is ErrorKind.TRANSIENT


def test_an_unknown_host_is_permanent() -> None:
    err = _error(lambda s: get_checked(s, "http://no-such-host.invalid/cfg"))
    assert classify(err).kind is ErrorKind.PERMANENT


# RecoveringMiddleware: the httpx transport's semantics for aiohttp.


async def text_of(
    session: aiohttp.ClientSession, url: str, method: str = "GET", **kw: Any
) -> tuple[int, str]:
    async with session.request(method, url, **kw) as response:
        return response.status, await response.text()


@pytest.mark.parametrize("status", [408, 425, 500, 502, 504])
def test_transient_statuses_are_retried(script: Script, base: str, status: int) -> None:
    script.plan("/cfg", Reply(status), Reply(status), Reply(200, b"config"))
    clock = FakeClock()
    assert run(lambda s: text_of(s, f"{base}/cfg"), recovering(clock, attempts=4)) == (200, "config")
    assert script.count("/cfg") == 3
    assert clock.sleeps == [0.5, 1.0]


def test_retry_after_is_honoured_and_capped(script: Script, base: str) -> None:
    script.plan("/a", Reply(429, headers={"Retry-After": "3"}), Reply(200, b"a"))
    script.plan("/b", Reply(503, headers={"Retry-After": "3600"}), Reply(200, b"b"))
    clock = FakeClock()
    mw = recovering(clock, attempts=3, max_retry_after=10)
    assert run(lambda s: text_of(s, f"{base}/a"), mw) == (200, "a")
    assert run(lambda s: text_of(s, f"{base}/b"), mw) == (200, "b")
    assert clock.sleeps == [3, 10]


def test_giving_up_returns_the_last_response_with_its_body(script: Script, base: str) -> None:
    script.plan("/cfg", Reply(503, b"maintenance"))
    clock = FakeClock()
    assert run(lambda s: text_of(s, f"{base}/cfg"), recovering(clock, attempts=3)) == (503, "maintenance")
    assert script.count("/cfg") == 3


def test_post_is_not_retried_unless_it_carries_an_idempotency_key(script: Script, base: str) -> None:
    script.plan("/orders", Reply(502), Reply(201, b"created"))
    clock = FakeClock()
    mw = recovering(clock, attempts=3)
    assert run(lambda s: text_of(s, f"{base}/orders", "POST", data=b"{}"), mw)[0] == 502
    script.plan("/orders", Reply(502), Reply(201, b"created"))
    key = {"Idempotency-Key": "order-17"}
    assert run(lambda s: text_of(s, f"{base}/orders", "POST", data=b"{}", headers=key), mw) == (
        201,
        "created",
    )


def test_permanent_statuses_are_answers_not_retried(script: Script, base: str) -> None:
    script.plan("/cfg", Reply(404, b"no such config"))
    clock = FakeClock()
    assert run(lambda s: text_of(s, f"{base}/cfg"), recovering(clock, attempts=3)) == (404, "no such config")
    assert script.count("/cfg") == 1


def test_a_cut_connection_is_retried_and_recovers(script: Script, base: str) -> None:
    script.plan("/cfg", Reply(reset=True), Reply(reset=True), Reply(200, b"config"))
    clock = FakeClock()
    assert run(lambda s: text_of(s, f"{base}/cfg"), recovering(clock, attempts=4)) == (200, "config")


def test_a_refused_connection_is_retried_then_reraised_as_aiohttp_raised_it() -> None:
    port = closed_port()
    clock = FakeClock()
    with pytest.raises(aiohttp.ClientConnectorError):
        run(lambda s: text_of(s, f"http://127.0.0.1:{port}/cfg"), recovering(clock, attempts=3))
    assert len(clock.sleeps) == 2


def test_the_breaker_of_the_host_opens(script: Script, base: str) -> None:
    from bounceback import CircuitBreaker, CircuitOpenError

    script.plan("/cfg", Reply(500))
    clock = FakeClock()
    breaker = CircuitBreaker("cfg-host", consecutive_failures=2, clock=clock)
    mw = recovering(clock, attempts=1, breakers=lambda _name: breaker)
    for _ in range(2):
        run(lambda s: text_of(s, f"{base}/cfg"), mw)
    with pytest.raises(CircuitOpenError):
        run(lambda s: text_of(s, f"{base}/cfg"), mw)
