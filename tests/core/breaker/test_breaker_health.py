"""Health checks run by the breaker while open, and the timers that drive them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from bounceback import BreakerState, CircuitBreaker, Classification, ErrorKind
from bounceback.events import EventBus, HealthChecked
from bounceback.testing import FakeClock, RecordingSink

DOWN = Classification(ErrorKind.TRANSIENT, "down")


def trip(brk: CircuitBreaker) -> None:
    for _ in range(brk.config.min_calls):
        brk.release(brk.acquire(), DOWN)
    assert brk.state_name == "open"


def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll a real timer's effect with a short bounded loop."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_health_check_runs_on_its_interval_and_a_pass_moves_to_half_open() -> None:
    clock, bus = FakeClock(), EventBus()
    healthy = [False, False, True]
    seen: list[float] = []

    def check() -> bool:
        seen.append(clock.monotonic())
        return healthy.pop(0)

    brk = CircuitBreaker(
        "health",
        window=2,
        min_calls=2,
        open_seconds=300,
        health_check=check,
        health_check_seconds=5,
        clock=clock,
        bus=bus,
    )
    with RecordingSink(bus) as sink:
        trip(brk)
        assert brk.tick() == 5.0  # nothing due yet
        for _ in range(3):
            clock.advance(5)
            brk.tick()
    assert seen == [5.0, 10.0, 15.0]
    assert brk.state is BreakerState.HALF_OPEN  # long before the 300 s open time
    checks = sink.of(HealthChecked)
    assert [c.ok for c in checks] == [False, False, True]
    assert checks[0].error == "the health check returned False"
    stats = brk.metrics().health
    assert (stats.checks, stats.failures, stats.last_ok) == (3, 2, True)
    assert "the health check passed" in brk.metrics().last_transitions[-1].reason


def test_a_raising_check_is_a_failed_check_not_a_crash() -> None:
    clock = FakeClock()

    def check() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    brk = CircuitBreaker("raising", window=2, min_calls=2, health_check=check, clock=clock, bus=EventBus())
    trip(brk)
    clock.advance(5)
    assert brk.tick() == 5.0
    assert brk.state is BreakerState.OPEN
    assert brk.metrics().health.last_error == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_no_check_while_closed_or_forced_open() -> None:
    clock = FakeClock()
    calls: list[int] = []
    brk = CircuitBreaker("idle", health_check=lambda: calls.append(1), clock=clock, bus=EventBus())
    clock.advance(100)
    assert brk.tick() is None
    brk.force_open()
    clock.advance(100)
    assert brk.tick() is None
    assert calls == []


def test_async_check_with_atick_and_with_tick_outside_a_loop() -> None:
    clock = FakeClock()
    results = [False, True]

    async def check() -> bool:
        await asyncio.sleep(0)
        return results.pop(0)

    brk = CircuitBreaker(
        "async-health", window=2, min_calls=2, health_check=check, clock=clock, bus=EventBus()
    )
    trip(brk)
    clock.advance(5)
    brk.tick()  # no loop running here: the check runs to completion on a loop of its own
    assert brk.state is BreakerState.OPEN and brk.metrics().health.checks == 1
    clock.advance(5)
    asyncio.run(brk.atick())
    assert brk.state is BreakerState.HALF_OPEN

    async def inside_a_loop() -> None:
        brk.force_open()
        brk.force_close()
        trip(brk)
        clock.advance(5)
        with pytest.raises(RuntimeError, match="atick"):
            brk.tick()

    asyncio.run(inside_a_loop())


# -- the real clock: timers run by themselves -------------------------------------------------------------


def test_timer_half_open_happens_by_itself_with_the_real_clock() -> None:
    bus = EventBus()
    brk = CircuitBreaker("real-timer", window=2, min_calls=2, open_seconds=0.05, half_open="timer", bus=bus)
    with RecordingSink(bus) as sink:
        trip(brk)
        assert wait_until(lambda: brk.state_name == "half_open")
    assert [type(e).__name__ for e in sink.events][-1] == "BreakerHalfOpened"
    assert wait_until(lambda: not brk.timers_running)  # the timer thread ended once nothing was left to do


def test_sync_health_check_runs_on_a_daemon_thread() -> None:
    threads: list[threading.Thread] = []

    def check() -> bool:
        threads.append(threading.current_thread())
        return len(threads) >= 2

    brk = CircuitBreaker(
        "real-health",
        window=2,
        min_calls=2,
        open_seconds=60,
        health_check=check,
        health_check_seconds=0.02,
        bus=EventBus(),
    )
    trip(brk)
    assert wait_until(lambda: brk.state_name == "half_open")
    assert len(threads) == 2
    assert all(t.daemon and t is not threading.main_thread() for t in threads)
    brk.close()


def test_async_health_check_runs_as_a_task_on_the_running_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loops: list[asyncio.AbstractEventLoop] = []

        async def check() -> bool:
            loops.append(asyncio.get_running_loop())
            return True

        brk = CircuitBreaker(
            "loop-health",
            window=2,
            min_calls=2,
            open_seconds=60,
            health_check=check,
            health_check_seconds=0.02,
            bus=EventBus(),
        )
        trip(brk)
        for _ in range(500):
            if brk.state_name == "half_open":
                break
            await asyncio.sleep(0.005)
        assert brk.state_name == "half_open"
        assert loops == [loop]
        brk.close()

    asyncio.run(main())
