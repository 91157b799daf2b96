"""A wall-clock jump (a person or NTP sets the system time) does not shorten or lengthen waits or open times.

Durations run on the monotonic clock; wall time is for display and for times shared through a store. The
FakeClock's ``jump_wall`` moves only the wall clock, as a changed system time does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bounceback import Backoff, BreakerState, CircuitBreaker, CircuitOpenError, Policy
from bounceback.events import EventBus, RetryScheduled
from bounceback.stores import RedisBreakerStore, SqliteBreakerStore
from bounceback.testing import FakeClock, RecordingSink
from tests.redis_server import RedisServer
from tests.reliability.conftest import Figures

DAY = 86400.0
JUMPS = (+DAY, -DAY, +3600.0, -7 * DAY)


class Down(ConnectionError):
    pass


def _run(jumps: tuple[float, ...]) -> tuple[list[float], int, str]:
    clock, bus = FakeClock(), EventBus()
    sink = RecordingSink(bus)
    pending = list(jumps)

    def during_wait(_seconds: float) -> None:
        if pending:
            clock.jump_wall(pending.pop(0))

    clock.on_sleep = during_wait
    calls = [0]

    def down() -> None:
        calls[0] += 1
        raise Down("still down")

    policy = Policy(
        "jumpy",
        attempts=10,
        deadline=20,
        backoff=Backoff(initial=1, multiplier=2, jitter="none"),
        clock=clock,
        bus=bus,
    )
    with pytest.raises(Down) as info:
        policy.call(down)
    scheduled = sink.of(RetryScheduled)
    # Shown times follow the wall clock (display); the wait itself does not.
    for event in scheduled:
        assert event.delay in (1, 2, 4, 8)
    return clock.sleeps, calls[0], str(info.value.__notes__[0].splitlines()[0])


def test_retry_waits_and_deadlines_ignore_wall_jumps(figures: Callable[[str], Figures]) -> None:
    fig = figures("wall-clock-jump")
    steady = _run(())
    jumpy = _run(JUMPS)
    assert jumpy == steady
    assert steady[0] == [1, 2, 4, 8]  # 15 s of waiting, the deadline (20 s) stops the fifth wait
    fig.tries += len(JUMPS)
    fig.result = "retry waits and the deadline identical with and without wall jumps of -7 d..+1 d"


def _check_open_time(
    make: Callable[[FakeClock], CircuitBreaker], clock: FakeClock, n: int = 2
) -> tuple[str, ...]:
    breakers = [make(clock) for _ in range(n)]  # n "processes" sharing one store
    first = breakers[0]
    for _ in range(4):
        with pytest.raises(Down):
            first.call(lambda: (_ for _ in ()).throw(Down("down")))
    assert first.state is BreakerState.OPEN
    clock.advance(1.5)  # past sync_seconds: the other breaker adopts the shared state on its next call
    for brk in breakers:
        with pytest.raises(CircuitOpenError) as info:
            brk.call(lambda: None)
        assert info.value.retry_after == pytest.approx(10 - 1.5)
    for jump in JUMPS:
        clock.jump_wall(jump)
        clock.advance(1.5)
        for brk in breakers:
            with pytest.raises(CircuitOpenError) as info:
                brk.call(lambda: None)
            assert info.value.state == "open"
    # 1.5 + 4 * 1.5 = 7.5 s of the 10 s open time have passed, whatever the wall clock says.
    for brk in breakers:
        with pytest.raises(CircuitOpenError) as info:
            brk.call(lambda: None)
        assert info.value.retry_after == pytest.approx(2.5)
    clock.advance(2.5)
    states = []
    for brk in breakers:
        brk.call(lambda: None)  # the probe passes
        states.append(brk.state_name)
    return tuple(states)


def _local(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(
        "jump-local",
        window=4,
        min_calls=4,
        open_seconds=10,
        open_jitter=0,
        half_open_calls=1,
        clock=clock,
        bus=EventBus(),
    )


def test_open_time_ignores_wall_jumps_in_memory(figures: Callable[[str], Figures]) -> None:
    fig = figures("wall-clock-jump")
    assert _check_open_time(_local, FakeClock(), n=1) == ("closed",)
    fig.tries += len(JUMPS)
    fig.result = "in-memory breaker: open time measured on the monotonic clock through 4 wall jumps"


def test_open_time_ignores_wall_jumps_on_sqlite(home: Path, figures: Callable[[str], Figures]) -> None:
    fig = figures("wall-clock-jump")
    db = home / "bounceback.db"
    stores: list[SqliteBreakerStore] = []

    def make(clock: FakeClock) -> CircuitBreaker:
        stores.append(SqliteBreakerStore(db))
        return CircuitBreaker(
            "jump-sqlite",
            store=stores[-1],
            window=4,
            min_calls=4,
            open_seconds=10,
            open_jitter=0,  # the open time is exactly what the wall jumps must not shift
            half_open_calls=1,
            clock=clock,
            bus=EventBus(),
        )

    states = _check_open_time(make, FakeClock())
    for store in stores:
        store.close()
    assert "closed" in states and set(states) <= {"closed", "half_open"}
    fig.tries += len(JUMPS)
    fig.result = "SQLite-shared breakers (two): open time unchanged by wall jumps in the store's view"


def test_open_time_ignores_wall_jumps_on_redis(
    redis_server: RedisServer, figures: Callable[[str], Figures]
) -> None:
    fig = figures("wall-clock-jump")
    stores: list[RedisBreakerStore] = []

    def make(clock: FakeClock) -> CircuitBreaker:
        stores.append(RedisBreakerStore(redis_server.url))
        return CircuitBreaker(
            "jump-redis",
            store=stores[-1],
            window=4,
            min_calls=4,
            open_seconds=10,
            open_jitter=0,  # the open time is exactly what the wall jumps must not shift
            half_open_calls=1,
            clock=clock,
            bus=EventBus(),
        )

    states = _check_open_time(make, FakeClock())
    for store in stores:
        store.close()
    assert "closed" in states and set(states) <= {"closed", "half_open"}
    fig.tries += len(JUMPS)
    fig.result = "Redis-shared breakers (two): open time unchanged by wall jumps in the store's view"
