"""Adaptive client-side throttling: the SRE rule, its window, and its place in a Policy."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounceback import AdaptiveThrottle, CircuitBreaker, ConfigError, Policy, RequestThrottled
from bounceback.classify import classify
from bounceback.core.classify._rules import Classification, ErrorKind
from bounceback.core.strategies._throttle import is_accepted
from bounceback.events import EventBus, RecoveryExhausted
from bounceback.settings import StaticSettings
from bounceback.testing import FakeClock, RecordingSink


def test_nothing_is_shed_while_the_service_accepts_everything() -> None:
    throttle = AdaptiveThrottle(clock=FakeClock(), rng=random.Random(0))
    for _ in range(1000):
        assert throttle.admit()
        throttle.record(True, accepted=True)
    assert throttle.refusal_probability() == 0.0


@given(
    requests=st.integers(0, 500),
    accepted_share=st.floats(0, 1),
    k=st.floats(1, 10),
)
def test_the_refusal_probability_is_the_sre_formula(requests: int, accepted_share: float, k: float) -> None:
    throttle = AdaptiveThrottle(k, clock=FakeClock(), rng=random.Random(1))
    accepts = int(requests * accepted_share)
    for i in range(requests):
        # Count without the random draw, to check the arithmetic alone (the running totals).
        throttle._requested += 1
        if i < accepts:
            throttle._accepted += 1
    expected = max(0.0, (requests - k * accepts) / (requests + 1))
    assert throttle.refusal_probability() == pytest.approx(expected)
    assert 0.0 <= throttle.refusal_probability() < 1.0


def test_shedding_follows_the_probability_and_refused_requests_still_count() -> None:
    throttle = AdaptiveThrottle(k=2, clock=FakeClock(), rng=random.Random(5))
    sent = 0
    for _ in range(2000):
        ok = throttle.admit()
        sent += ok
        throttle.record(ok, accepted=False)  # the service refuses everything it gets
    # Refusals count as requests, so nearly everything is shed once the service has refused a few.
    assert sent < 100
    assert throttle.refusal_probability() > 0.99


def test_the_window_forgets_a_slice_at_a_time() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(k=2, window=30, clock=clock, rng=random.Random(2))
    for _ in range(50):
        throttle.record(throttle.admit(), accepted=False)
    high = throttle.refusal_probability()
    clock.advance(15)  # half the window: the refusals are still in it
    assert throttle.refusal_probability() == high
    clock.advance(15)  # a whole window later they have left
    assert throttle.refusal_probability() == 0.0


def test_a_permanent_error_is_an_answer_so_it_counts_as_accepted() -> None:
    assert is_accepted(None)
    assert is_accepted(Classification(ErrorKind.PERMANENT, "bad request"))
    assert not is_accepted(Classification(ErrorKind.TRANSIENT, "reset"))
    assert not is_accepted(Classification(ErrorKind.THROTTLED, "429"))


def test_a_policy_sheds_before_the_call_and_a_shed_call_never_runs() -> None:
    clock, bus = FakeClock(), EventBus()
    throttle = AdaptiveThrottle(clock=clock, rng=random.Random(3))
    policy = Policy("pricing", throttle=throttle, attempts=1, clock=clock, bus=bus)
    ran: list[int] = []

    def overloaded() -> None:
        ran.append(1)
        raise ConnectionResetError("shed by the service")

    outcomes = []
    refusals: list[RequestThrottled] = []
    for _ in range(100):
        try:
            policy.call(overloaded)
        except RequestThrottled as exc:
            outcomes.append("shed")
            refusals.append(exc)
        except ConnectionResetError:
            outcomes.append("sent")
    assert outcomes.count("shed") > 50
    assert all(r.throttle == "throttle" and 0 < r.probability < 1 for r in refusals)
    assert len(ran) == outcomes.count("sent")  # shed calls never ran
    assert classify(RequestThrottled("x", 0.5)).kind is ErrorKind.THROTTLED


def test_a_shed_retry_ends_the_call_at_once_without_waiting() -> None:
    clock, bus = FakeClock(), EventBus()
    throttle = AdaptiveThrottle(clock=clock, rng=random.Random(3))
    for _ in range(20):
        throttle.record(throttle.admit(), accepted=False)  # the service has been refusing
    policy = Policy("pricing", throttle=throttle, attempts=5, clock=clock, bus=bus)

    def overloaded() -> None:
        raise ConnectionResetError("shed by the service")

    with RecordingSink(bus) as sink:
        for _ in range(20):
            try:
                policy.call(overloaded)
            except (RequestThrottled, ConnectionResetError):
                pass
    ends = sink.of(RecoveryExhausted)
    assert ends and all(e.reason in ("throttled", "attempts") for e in ends)
    assert any(e.reason == "throttled" for e in ends)
    throttled_runs = [e for e in ends if e.reason == "throttled"]
    assert all(e.attempts <= 5 for e in throttled_runs)
    # A shed attempt is not waited on: the waits recorded are only backoffs before attempts that were sent.
    assert len(clock.sleeps) <= sum(e.attempts - 1 for e in ends)


def test_a_throttle_and_a_breaker_both_see_every_call_sent() -> None:
    clock = FakeClock()
    brk = CircuitBreaker("pricing-db", window=4, min_calls=4, clock=clock, bus=EventBus())
    throttle = AdaptiveThrottle(clock=clock, rng=random.Random(4))
    policy = Policy("pricing", breaker=brk, throttle=throttle, attempts=1, clock=clock, bus=EventBus())
    assert policy.breaker is brk and policy.throttle is throttle
    for _ in range(3):
        assert policy.call(lambda: 1) == 1
    assert brk.metrics().calls == 3
    assert throttle._accepted == 3


def test_async_calls_pass_the_throttle_too() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(clock=clock, rng=random.Random(6))
    policy = Policy("apricing", throttle=throttle, attempts=1, clock=clock, bus=EventBus())

    async def down() -> None:
        raise ConnectionResetError("no")

    async def main() -> list[str]:
        seen = []
        for _ in range(60):
            try:
                await policy.acall(down)
            except RequestThrottled:
                seen.append("shed")
            except ConnectionResetError:
                seen.append("sent")
        return seen

    seen = asyncio.run(main())
    assert seen.count("shed") > 30


def test_settings_give_each_operation_one_throttle() -> None:
    clock = FakeClock()
    settings = StaticSettings({"throttle.enabled": True, "throttle.k": 1.5, "throttle.window": 10})
    a = Policy("quotes", settings=settings, clock=clock)
    b = Policy("quotes", settings=settings, clock=clock)
    other = Policy("orders", settings=settings, clock=clock)
    assert a.throttle is not None and a.throttle is b.throttle and other.throttle is not a.throttle
    assert (a.throttle.k, a.throttle.window) == (1.5, 10.0)
    assert Policy("plain", settings=StaticSettings({}), clock=clock).throttle is None  # off by default


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"k": 0.5}, "k"), ({"k": True}, "k"), ({"window": 0}, "window"), ({"window": float("inf")}, "window")],
)
def test_bad_limits_name_the_field_and_the_fix(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        AdaptiveThrottle(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_a_policy_refuses_something_that_is_not_a_throttle() -> None:
    with pytest.raises(ConfigError, match="AdaptiveThrottle"):
        Policy("x", throttle=object())  # type: ignore[arg-type]
