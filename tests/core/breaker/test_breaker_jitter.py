"""Open times that bring traffic back quickly and never in lockstep: grown, capped, jittered per opening."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounceback import BreakerState, CircuitBreaker, ConfigError
from bounceback.core.breaker._config import build_config
from bounceback.core.classify._rules import Classification, ErrorKind
from bounceback.events import EventBus
from bounceback.testing import FakeClock

DOWN = Classification(ErrorKind.TRANSIENT, "down")


def trip(brk: CircuitBreaker) -> None:
    while brk.state is BreakerState.CLOSED:
        brk.release(brk.acquire(), DOWN)


def fleet(n: int, clock: FakeClock, rng: random.Random, **limits: object) -> list[CircuitBreaker]:
    bus = EventBus()
    kw: dict[str, object] = {"window": 2, "min_calls": 2, **limits}
    return [CircuitBreaker(clock=clock, bus=bus, rng=rng, **kw) for _ in range(n)]  # type: ignore[arg-type]


def probe_times(breakers: list[CircuitBreaker]) -> list[float]:
    times = []
    for brk in breakers:
        at = brk.metrics().retry_after
        assert at is not None
        times.append(at)
    return times


def test_breakers_opened_together_probe_spread_over_the_last_half_of_the_open_time() -> None:
    clock = FakeClock()
    breakers = fleet(200, clock, random.Random(7), open_seconds=60, open_seconds_max=60)
    for brk in breakers:
        trip(brk)  # all open at the same instant, as a fleet does when its dependency goes down
    times = probe_times(breakers)
    assert min(times) >= 30.0 and max(times) <= 60.0
    per_second = Counter(int(t) for t in times)
    # Without jitter all 200 would probe in one second; spread over 30 s, about 7 a second.
    assert max(per_second.values()) <= 20
    assert len(per_second) >= 25


def test_without_jitter_they_probe_in_lockstep() -> None:
    clock = FakeClock()
    breakers = fleet(50, clock, random.Random(7), open_seconds=60, open_seconds_max=60, open_jitter=0)
    for brk in breakers:
        trip(brk)
    assert set(probe_times(breakers)) == {60.0}


def test_the_same_seed_draws_the_same_open_times() -> None:
    runs = []
    for _ in range(2):
        clock = FakeClock()
        breakers = fleet(20, clock, random.Random(42))
        for brk in breakers:
            trip(brk)
        runs.append(probe_times(breakers))
    assert runs[0] == runs[1]


def test_every_reopening_draws_again_and_the_grown_time_stays_under_the_cap() -> None:
    clock = FakeClock()
    (brk,) = fleet(1, clock, random.Random(3), half_open_calls=1)  # the defaults: 5 s doubling to 15 s
    waits = []
    for _ in range(8):
        trip(brk) if brk.state is BreakerState.CLOSED else None
        left = brk.metrics().retry_after
        assert left is not None
        waits.append(left)
        clock.advance(left)
        brk.release(brk.acquire(), DOWN)  # the probe fails: open again, for longer
    assert 2.5 <= waits[0] <= 5.0
    assert 5.0 <= waits[1] <= 10.0
    assert all(7.5 <= w <= 15.0 for w in waits[2:])  # capped at 15 s, less up to half of it
    assert len(set(waits[2:])) == len(waits[2:])  # a new draw each time


def test_a_health_check_finds_the_recovery_before_the_capped_open_time_would() -> None:
    clock = FakeClock()
    up = [False]
    brk = CircuitBreaker(
        "checked", window=2, min_calls=2, health_check=lambda: up[0], clock=clock, bus=EventBus(),
        rng=random.Random(1),
    )  # fmt: skip
    trip(brk)
    left = brk.metrics().retry_after
    assert left is not None and 7.5 <= left <= 15.0  # with a check, the timer is only the backstop
    up[0] = True  # the service comes back
    clock.advance(brk.config.health_check_seconds)
    brk.tick()
    assert brk.state is BreakerState.HALF_OPEN  # found by the check, before the open time ran out
    assert clock.monotonic() < left


@given(
    start=st.floats(0.001, 1_000),
    extra=st.floats(0, 10_000),
    multiplier=st.floats(1, 100),
    jitter=st.floats(0, 0.95),
    reopens=st.integers(0, 10_000),
    draw=st.floats(0, 1, exclude_max=True),
)
def test_an_open_time_is_never_above_the_cap_nor_below_its_jittered_floor(
    start: float, extra: float, multiplier: float, jitter: float, reopens: int, draw: float
) -> None:
    cfg = build_config(
        {
            "open_seconds": start,
            "open_seconds_max": start + extra,
            "open_multiplier": multiplier,
            "open_jitter": jitter,
        }
    )
    grown = min(start * multiplier ** min(reopens, 64), start + extra)
    seconds = cfg.open_for(reopens, draw)
    assert seconds <= cfg.open_seconds_max
    assert grown * (1 - jitter) - 1e-9 <= seconds <= grown + 1e-9


@pytest.mark.parametrize("bad", [-0.1, 0.96, 1, float("nan"), "half", True])
def test_a_bad_open_jitter_is_refused_with_the_field_and_the_fix(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(open_jitter=bad)
    assert info.value.field == "open_jitter"
    assert "0.95" in str(info.value)
