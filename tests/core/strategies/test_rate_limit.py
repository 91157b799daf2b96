"""The rate limiter: a token bucket on a FakeClock, waiting or refusing with a Retry-After hint."""

from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bounceback import ConfigError, ErrorKind, Policy, RateLimiter, RateLimitExceeded, RequestThrottled
from bounceback.classify import classify
from bounceback.events import EventBus, LimitRejected
from bounceback.settings import StaticSettings
from bounceback.testing import FakeClock


def test_burst_then_refusal_with_the_time_to_the_next_token() -> None:
    clock = FakeClock()
    bus = EventBus()
    seen: list[object] = []
    bus.subscribe(seen.append)
    limiter = RateLimiter(4, burst=2, name="search", clock=clock, bus=bus)
    limiter.acquire()
    limiter.acquire()
    with pytest.raises(RateLimitExceeded) as info:
        limiter.acquire()
    exc = info.value
    assert exc.retry_after == pytest.approx(0.25) and exc.limiter == "search" and exc.rate == 4
    assert isinstance(exc, RequestThrottled)
    assert "0.25 s" in str(exc) and "search" in str(exc)
    verdict = classify(exc)
    assert verdict.kind is ErrorKind.THROTTLED and verdict.retry_after == pytest.approx(0.25)
    assert limiter.rejected == 1
    assert (
        len(seen) == 1 and isinstance(seen[0], LimitRejected) and seen[0].retry_after == pytest.approx(0.25)
    )
    clock.advance(exc.retry_after)
    limiter.acquire()  # exactly the hint later, a token is there
    assert clock.sleeps == []


def test_waiting_mode_sleeps_on_the_clock_in_arrival_order() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, burst=1, max_wait=0.5, clock=clock)
    for _ in range(4):
        limiter.acquire()
    # The first call used the burst; each next one waits 0.1 s after the previous.
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1])


def test_a_call_during_another_calls_wait_queues_behind_its_reservation() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, burst=1, max_wait=0.15, clock=clock)
    limiter.acquire()
    hints: list[float] = []

    def meanwhile(delay: float) -> None:
        clock.on_sleep = None
        try:
            limiter.acquire()  # the token the sleeper waits for is taken: this one would need 0.2 s
        except RateLimitExceeded as exc:
            hints.append(exc.retry_after)

    clock.on_sleep = meanwhile
    limiter.acquire()
    assert clock.sleeps == pytest.approx([0.1])
    assert hints == pytest.approx([0.2])


def test_async_acquire_awaits_the_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, burst=1, max_wait=1, clock=clock)

    async def main() -> None:
        await limiter.acquire_async()
        await limiter.acquire_async()

    asyncio.run(main())
    assert clock.sleeps == pytest.approx([0.5])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": "fast"}, "rate"),
        ({"rate": 1, "burst": 0}, "burst"),
        ({"rate": 1, "max_wait": -1}, "max_wait"),
        ({"rate": 1, "name": ""}, "name"),
    ],
)
def test_bad_rates_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimiter(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_policy_refusal_is_not_retried_and_carries_the_hint() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, burst=1, clock=clock)
    policy = Policy("quotes", rate_limit=limiter, attempts=5, clock=clock, budget=None)
    calls: list[int] = []

    def quote() -> str:
        calls.append(1)
        return "ok"

    assert policy.call(quote) == "ok"
    with pytest.raises(RateLimitExceeded) as info:
        policy.call(lambda: calls.append(1))
    assert info.value.retry_after == pytest.approx(1.0)
    assert calls == [1] and clock.sleeps == []  # refused locally, not retried, nothing sent


def test_policy_in_waiting_mode_waits_for_its_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, burst=1, max_wait=1, clock=clock)
    policy = Policy("quotes", rate_limit=limiter, clock=clock)
    assert [policy.call(lambda: "ok") for _ in range(3)] == ["ok"] * 3
    assert clock.sleeps == pytest.approx([0.2, 0.2])


def test_threads_share_one_bucket_exactly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, burst=50, clock=clock)
    admitted = refused = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal admitted, refused
        for _ in range(20):
            try:
                limiter.try_acquire()
                ok = True
            except RateLimitExceeded:
                ok = False
            with lock:
                if ok:
                    admitted += 1
                else:
                    refused += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted == 50 and refused == 110  # the clock never moved: exactly the burst


def test_settings_give_each_operation_one_bucket() -> None:
    clock = FakeClock()
    settings = StaticSettings({"rate_limit.rate": 20, "rate_limit.max_wait": "100ms"})
    a = Policy("search", settings=settings, clock=clock)
    b = Policy("search", settings=settings, clock=clock)
    assert a.rate_limit is b.rate_limit and a.rate_limit is not None
    assert (a.rate_limit.rate, a.rate_limit.burst, a.rate_limit.max_wait) == (20.0, 20, 0.1)
    assert Policy("plain", settings=StaticSettings({}), clock=clock).rate_limit is None


class RateMachine(RuleBasedStateMachine):
    """Calls and time in any order: the bucket matches a reference model, never lets more than
    ``burst + rate * t`` through in ``t`` seconds, and its hint is exact."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.rate, self.burst, self.max_wait = 3.0, 4, 0.5
        self.limiter = RateLimiter(self.rate, burst=self.burst, max_wait=self.max_wait, clock=self.clock)
        self.model_tokens = float(self.burst)
        self.model_stamp = self.clock.monotonic()
        self.passed: list[float] = []  # when each admitted call went through (after any wait)
        self.hint: float | None = None

    def _model(self, max_wait: float) -> float | None:
        """A plain re-statement of the rule: the wait for a token, or None for a refusal."""
        now = self.clock.monotonic()
        tokens = min(self.burst, self.model_tokens + (now - self.model_stamp) * self.rate) - 1
        self.model_stamp = now
        if tokens >= -1e-9:
            self.model_tokens = max(tokens, 0.0)
            return 0.0
        wait = -tokens / self.rate
        if wait > max_wait:
            self.model_tokens = tokens + 1
            return None
        self.model_tokens = tokens
        return wait

    @rule(seconds=st.floats(0, 3, allow_nan=False))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(wait=st.booleans())
    def call(self, wait: bool) -> None:
        expected = self._model(self.max_wait if wait else 0.0)
        sleeps = len(self.clock.sleeps)
        try:
            if wait:
                self.limiter.acquire()
            else:
                self.limiter.try_acquire()
        except RateLimitExceeded as exc:
            refused: RateLimitExceeded | None = exc
        else:
            refused = None
        if refused is not None:
            assert expected is None
            assert refused.retry_after > 0
            self.hint = refused.retry_after
            return
        assert expected is not None
        waited = sum(self.clock.sleeps[sleeps:])
        assert waited == pytest.approx(expected, abs=1e-9)
        self.passed.append(self.clock.monotonic())
        self.hint = None

    @rule()
    def come_back_after_the_hint(self) -> None:
        if self.hint is None:
            return
        self.clock.advance(self.hint)
        self.hint = None
        # Reservations by waiting calls may stand before us; without them the token is there.
        if self.limiter.available() >= 0:
            self._model(0.0)
            self.limiter.try_acquire()
            self.passed.append(self.clock.monotonic())

    @invariant()
    def never_faster_than_the_rule(self) -> None:
        assert self.limiter.available() <= self.burst
        times = self.passed
        for i in range(len(times)):
            for j in range(i, len(times)):
                assert j - i + 1 <= self.burst + self.rate * (times[j] - times[i]) + 1e-6


TestRateMachine = RateMachine.TestCase
TestRateMachine.settings = hsettings(max_examples=80, stateful_step_count=30, deadline=None)


def test_an_async_policy_in_waiting_mode_awaits_its_token_on_the_clock() -> None:
    import asyncio

    clock = FakeClock()
    bucket = RateLimiter(2, burst=1, max_wait=5, name="async-wait", clock=clock)
    policy = Policy("async-wait", rate_limit=bucket, attempts=1, clock=clock, bus=EventBus())

    async def fetch() -> str:
        return "ok"

    async def main() -> list[str]:
        return [await policy.acall(fetch) for _ in range(3)]

    assert asyncio.run(main()) == ["ok", "ok", "ok"]  # waited for tokens rather than being refused
    assert clock.sleeps == [0.5, 0.5]
