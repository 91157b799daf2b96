"""The Policy's short routes (a wrapper's inlined first attempt, a retry decided without a run record, the
gates asked without an outcome tuple) decide exactly as the general path does."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bounceback import (
    Backoff,
    CircuitBreaker,
    CircuitOpenError,
    ConcurrencyLimiter,
    Policy,
    RetryBudget,
)
from bounceback.events import EventBus
from bounceback.testing import FakeClock

ZERO = Backoff("constant", initial=0, max_delay=0, jitter="none")  # retries without a wait
STEPS = st.lists(st.sampled_from(["ok", "reset", "bad", "timeout"]), min_size=1, max_size=6)


class Script:
    """A dependency that answers from a script: ``ok`` returns, ``reset``/``timeout`` fail transiently,
    ``bad`` permanently; past the end of the script it answers ok."""

    def __init__(self, steps: list[str]) -> None:
        self.steps = list(steps)
        self.calls = 0

    def __call__(self, x: int) -> int:
        step = self.steps[self.calls] if self.calls < len(self.steps) else "ok"
        self.calls += 1
        if step == "reset":
            raise ConnectionResetError("reset")
        if step == "timeout":
            raise TimeoutError("slow")
        if step == "bad":
            raise ValueError("bad input")
        return x * 2


@dataclass
class Seen:
    """Everything an observer can tell about one call through a Policy."""

    outcome: Any
    calls: int
    sleeps: list[float]
    breaker_calls: int
    breaker_failures: int
    slots_in_flight: int
    budget_retries: float
    budget_calls: float


def run_once(
    steps: list[str],
    attempts: int,
    gated: bool | str,
    form: str,
    seed: int,
    deadline: float | None,
    zero: bool = False,
) -> Seen:
    clock = FakeClock()
    bus = EventBus()
    if form == "listened":
        bus.subscribe(lambda event: None)  # someone listens: every recovery takes the recorded path
    # gated: True for the chain (limiter and breaker); "opens-at-1" / "opens-at-2" for a breaker alone (the
    # wrappers' no-permit route), warmed with ten successes so that it stays on that route after a failure,
    # which opens at one failure or two in a row (so some scripts open it between two attempts).
    if isinstance(gated, str):
        breaker = CircuitBreaker(
            "dep",
            consecutive_failures=int(gated[-1]),
            failure_rate=100,
            clock=clock,
            bus=bus,
            rng=random.Random(seed),
        )
        for _ in range(10):
            breaker.call(int)
        assert breaker.fast_path
    else:
        breaker = CircuitBreaker("dep", failure_rate=100, clock=clock, bus=bus) if gated else None
    limiter = ConcurrencyLimiter(4) if gated is True else None
    budget = RetryBudget(1.0, min_per_second=0.5, window=10, clock=clock)
    for _ in range(3):
        budget.record_call()
    policy = Policy(
        "dep",
        attempts=attempts,
        deadline=deadline,
        backoff=ZERO if zero else None,
        breaker=breaker,
        limiter=limiter,
        budget=budget,
        clock=clock,
        bus=bus,
        rng=random.Random(seed),
    )
    dep = Script(steps)
    outcome: Any
    try:
        if form == "call":
            outcome = policy.call(dep, 21)
        else:
            outcome = policy(dep)(21)
    except Exception as exc:
        outcome = (type(exc).__name__, list(getattr(exc, "__notes__", [])))
    metrics = breaker.metrics() if breaker is not None else None
    return Seen(
        outcome,
        dep.calls,
        list(clock.sleeps),
        metrics.calls if metrics is not None else 0,
        metrics.failures if metrics is not None else 0,
        limiter.in_flight if limiter is not None else 0,
        budget.reading().retries,
        budget.reading().calls,
    )


@settings(max_examples=150, deadline=None)
@given(
    steps=STEPS,
    attempts=st.integers(1, 4),
    gated=st.sampled_from([False, True, "opens-at-1", "opens-at-2"]),
    seed=st.integers(0, 1000),
    deadline=st.sampled_from([None, 0.5, 30.0]),
    zero=st.booleans(),
)
def test_the_short_routes_decide_as_the_recorded_path(
    steps: list[str], attempts: int, gated: bool | str, seed: int, deadline: float | None, zero: bool
) -> None:
    listened = run_once(steps, attempts, gated, "listened", seed, deadline, zero)
    assert run_once(steps, attempts, gated, "decorated", seed, deadline, zero) == listened
    assert run_once(steps, attempts, gated, "call", seed, deadline, zero) == listened
    assert listened.slots_in_flight == 0


def test_a_gated_wrapper_gives_the_slot_back_on_an_interrupt_and_counts_no_outcome() -> None:
    class Stop(BaseException):
        pass

    clock = FakeClock()
    breaker = CircuitBreaker("job", clock=clock)
    limiter = ConcurrencyLimiter(1)

    @Policy("job", limiter=limiter, breaker=breaker, clock=clock, budget=None)
    def interrupted() -> None:
        raise Stop

    with pytest.raises(Stop):
        interrupted()
    assert limiter.in_flight == 0
    assert breaker.metrics().calls == 0 and breaker.metrics().in_flight == 0


def test_a_gate_refusal_in_a_wrapper_is_a_failed_attempt_for_the_engine() -> None:
    clock = FakeClock()
    limiter = ConcurrencyLimiter(1, max_waiting=0)
    calls = 0

    @Policy("busy", limiter=limiter, attempts=3, clock=clock, budget=None)
    def inner() -> str:
        nonlocal calls
        calls += 1
        return "done"

    @Policy("outer", limiter=limiter, attempts=1, clock=clock, budget=None)
    def outer() -> str:
        return inner()  # the only slot is taken by outer: inner is refused every time

    with pytest.raises(Exception) as info:
        outer()
    assert type(info.value).__name__ == "ConcurrencyLimitExceeded"
    assert calls == 0 and limiter.in_flight == 0
    assert len(clock.sleeps) == 2  # refused three times, retried twice after a wait


def test_an_open_breaker_refuses_a_decorated_call_without_running_it() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("db", consecutive_failures=1, open_seconds=3600, clock=clock)
    limiter = ConcurrencyLimiter(2)
    ran = 0

    @Policy("db", breaker=breaker, limiter=limiter, attempts=1, clock=clock, budget=None)
    def query() -> str:
        nonlocal ran
        ran += 1
        raise ConnectionResetError("down")

    with pytest.raises(ConnectionResetError):
        query()
    assert ran == 1
    with pytest.raises(CircuitOpenError):
        query()
    assert ran == 1 and limiter.in_flight == 0


def arun_once(steps: list[str], gated: bool, listened: bool, zero: bool) -> tuple[Any, int, int]:
    clock = FakeClock()
    bus = EventBus()
    if listened:
        bus.subscribe(lambda event: None)
    breaker = CircuitBreaker("adep", failure_rate=100, clock=clock, bus=bus) if gated else None
    limiter = ConcurrencyLimiter(4) if gated else None
    policy = Policy(
        "adep",
        attempts=3,
        backoff=ZERO if zero else None,
        breaker=breaker,
        limiter=limiter,
        budget=None,
        clock=clock,
        bus=bus,
    )
    dep = Script(steps)

    async def call(x: int) -> int:
        return dep(x)

    wrapped: Callable[[int], Any] = policy(call)
    try:
        outcome: Any = asyncio.run(wrapped(21))
    except Exception as exc:
        outcome = type(exc).__name__
    return outcome, dep.calls, limiter.in_flight if limiter is not None else 0


@settings(max_examples=40, deadline=None)
@given(steps=STEPS, gated=st.booleans(), zero=st.booleans())
def test_the_async_wrapper_decides_as_the_recorded_path(steps: list[str], gated: bool, zero: bool) -> None:
    assert arun_once(steps, gated, False, zero) == arun_once(steps, gated, True, zero)
