"""Policy + CircuitBreaker: every attempt passes the breaker; an open breaker's probe time becomes the wait."""

from __future__ import annotations

import asyncio

import pytest

from bounceback import BreakerState, CircuitBreaker, CircuitOpenError, Policy
from bounceback.core.classify._rules import Classification, ErrorKind
from bounceback.events import EventBus, RecoveryExhausted, RetryScheduled
from bounceback.testing import FakeClock, RecordingSink

DOWN = Classification(ErrorKind.TRANSIENT, "down")


def opened(clock: FakeClock, bus: EventBus, open_seconds: float = 10) -> CircuitBreaker:
    brk = CircuitBreaker(
        "policy-breaker",
        window=2,
        min_calls=2,
        open_seconds=open_seconds,
        open_seconds_max=max(open_seconds, 15),
        open_jitter=0,  # exact waits; the jitter has its own tests
        half_open_calls=1,
        clock=clock,
        bus=bus,
    )
    for _ in range(2):
        brk.release(brk.acquire(), DOWN)
    assert brk.state is BreakerState.OPEN
    return brk


def test_policy_waits_for_the_probe_when_it_fits_the_deadline() -> None:
    clock, bus = FakeClock(), EventBus()
    brk = opened(clock, bus)
    calls: list[float] = []

    def fetch() -> str:
        calls.append(clock.monotonic())
        return "fresh"

    policy = Policy("fetch", breaker=brk, attempts=5, deadline=30, clock=clock, bus=bus)
    with RecordingSink(bus) as sink:
        assert policy.call(fetch) == "fresh"
    assert clock.sleeps == [10.0]  # not a blind backoff into the open breaker: exactly the probe time
    assert calls == [10.0]  # the function ran once, as the probe
    assert brk.state is BreakerState.CLOSED
    assert sink.of(RetryScheduled)[0].reason == "breaker"


def test_policy_gives_up_with_circuit_open_error_when_the_probe_is_past_the_deadline() -> None:
    clock, bus = FakeClock(), EventBus()
    brk = opened(clock, bus, open_seconds=60)
    ran: list[int] = []
    policy = Policy("fetch", breaker=brk, attempts=5, deadline=30, clock=clock, bus=bus)
    with RecordingSink(bus) as sink, pytest.raises(CircuitOpenError) as info:
        policy.call(ran.append, 1)
    assert ran == [] and clock.sleeps == []
    assert info.value.retry_after == 60.0
    assert sink.of(RecoveryExhausted)[0].reason == "breaker"


def test_by_default_a_call_fails_fast_on_an_open_breaker_whose_probe_is_past_the_default_deadline() -> None:
    clock, bus = FakeClock(), EventBus()
    brk = opened(clock, bus, open_seconds=45)
    ran: list[int] = []
    policy = Policy("fetch", breaker=brk, clock=clock, bus=bus)  # no deadline given: the default, 30 s
    assert policy.config.deadline == 30.0
    with RecordingSink(bus) as sink, pytest.raises(CircuitOpenError):
        policy.call(ran.append, 1)
    assert ran == [] and clock.sleeps == []  # no wait at all, not a wait of 30 s then a give-up
    assert sink.of(RecoveryExhausted)[0].reason == "breaker"


def test_by_default_a_call_waits_for_a_probe_due_within_the_default_deadline() -> None:
    clock, bus = FakeClock(), EventBus()
    brk = opened(clock, bus, open_seconds=10)
    policy = Policy("fetch", breaker=brk, clock=clock, bus=bus)
    assert policy.call(lambda: "fresh") == "fresh"
    assert clock.sleeps == [10.0]


def test_without_a_deadline_an_open_time_past_max_retry_after_fails_fast() -> None:
    clock, bus = FakeClock(), EventBus()
    brk = opened(clock, bus, open_seconds=120)
    policy = Policy("fetch", breaker=brk, deadline=None, max_retry_after=60, clock=clock, bus=bus)
    with pytest.raises(CircuitOpenError):
        policy.call(len, "x")
    assert clock.sleeps == []  # waiting 60 s would only meet the same open breaker
    waiting = Policy("fetch", breaker=brk, deadline=None, max_retry_after=300, clock=clock, bus=bus)
    assert waiting.call(len, "x") == 1
    assert clock.sleeps == [120.0]


def test_waiting_for_the_probe_is_a_retry_that_an_empty_budget_refuses() -> None:
    clock, bus = FakeClock(), EventBus()
    brk = opened(clock, bus, open_seconds=10)
    spent: list[str] = []

    class Budget:
        def try_spend(self, operation: str) -> bool:
            spent.append(operation)
            return False  # an empty budget: any retry it is asked for is refused

    policy = Policy("fetch", breaker=brk, budget=Budget(), clock=clock, bus=bus)
    with RecordingSink(bus) as sink, pytest.raises(CircuitOpenError):
        policy.call(lambda: "fresh")
    assert spent == ["fetch"] and clock.sleeps == []  # the budget was asked, said no: no wait at all
    assert sink.of(RecoveryExhausted)[0].reason == "budget"


def test_policy_gives_up_at_once_on_a_forced_open_breaker() -> None:
    clock, bus = FakeClock(), EventBus()
    brk = CircuitBreaker("forced", clock=clock, bus=bus)
    brk.force_open()
    policy = Policy("fetch", breaker=brk, attempts=5, clock=clock, bus=bus)
    with RecordingSink(bus) as sink, pytest.raises(CircuitOpenError):
        policy.call(len, "x")
    assert clock.sleeps == []
    assert sink.of(RecoveryExhausted)[0].reason == "permanent"


def test_async_policy_waits_for_the_probe_too() -> None:
    clock, bus = FakeClock(), EventBus()
    brk = opened(clock, bus)

    async def fetch() -> str:
        return "fresh"

    policy = Policy("afetch", breaker=brk, attempts=5, deadline=30, clock=clock, bus=bus)
    assert asyncio.run(policy.acall(fetch)) == "fresh"
    assert clock.sleeps == [10.0]
    assert brk.state is BreakerState.CLOSED


def test_every_attempt_counts_in_the_breaker_and_retries_stop_when_it_opens() -> None:
    clock, bus = FakeClock(), EventBus()
    brk = CircuitBreaker("counting", window=3, min_calls=3, open_seconds=120, clock=clock, bus=bus)
    ran: list[float] = []

    def down() -> None:
        ran.append(clock.monotonic())
        raise ConnectionError("refused")

    policy = Policy("flaky", breaker=brk, attempts=10, deadline=60, clock=clock, bus=bus)
    with pytest.raises(CircuitOpenError):
        policy.call(down)
    assert (
        len(ran) == 3
    )  # the third failure opened the breaker; the 4th attempt was refused, 120 s > deadline
    assert brk.metrics().failures == 3


def test_success_path_through_policy_counts_lazily() -> None:
    clock, bus = FakeClock(), EventBus()
    brk = CircuitBreaker("lazy", clock=clock, bus=bus)
    assert brk.fast_path
    policy = Policy("ok", breaker=brk, clock=clock, bus=bus)

    @policy
    def ok() -> int:
        return 1

    for _ in range(25):
        ok()
    assert brk.fast_path  # nothing but a count on the success path: no permit, no window write
    assert brk.metrics().calls == 25  # the count folded into the window, exactly
    assert brk.metrics().calls == 25  # and only once
