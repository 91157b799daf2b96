"""The breaker under concurrency: threads run in parallel, asyncio storms are bounded, counts add up."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable

import pytest

from bounceback import BreakerState, BulkheadFull, CircuitBreaker, CircuitOpenError
from bounceback.events import EventBus
from bounceback.testing import FakeClock


@pytest.mark.parametrize(
    "limits",
    [
        {},  # the fast path: no acquire at all
        {"max_in_flight": 8, "slow_call_rate": 50, "slow_call_duration": 5},  # permits, timing, locks
    ],
    ids=["fast-path", "permits"],
)
def test_eight_threads_run_in_parallel_not_one_at_a_time(limits: dict[str, object]) -> None:
    # pybreaker holds its lock during the call, so its calls run one at a time. Here no lock is held while
    # the function runs: proven without a stopwatch, by a barrier *inside* the call that only opens when
    # all eight threads are in their calls at once (serialised calls would leave it waiting, then broken).
    brk = CircuitBreaker("parallel", bus=EventBus(), **limits)  # type: ignore[arg-type]
    inside = threading.Barrier(8)
    errors: list[BaseException] = []

    def meet() -> None:
        inside.wait(timeout=10)

    def work() -> None:
        try:
            for _ in range(5):
                brk.call(meet)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert not inside.broken
    assert brk.metrics().calls == 40


class Dependency:
    """A failing async dependency that records who reached it and how many were inside at once."""

    def __init__(self, fail: bool = True) -> None:
        self.fail = fail
        self.reached: list[int] = []
        self.inside = 0
        self.peak = 0

    async def __call__(self, caller: int) -> int:
        self.reached.append(caller)
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        try:
            for _ in range(3):
                await asyncio.sleep(0)  # stay in flight while the other tasks arrive
            if self.fail:
                raise ConnectionError(caller)
            return caller
        finally:
            self.inside -= 1


async def storm(brk: CircuitBreaker, dep: Dependency, n: int = 10_000) -> dict[str, int]:
    """``n`` concurrent callers; every one must get its own answer or a refusal, nothing else."""

    async def caller(i: int) -> str:
        try:
            result = await brk.acall(dep, i)
        except ConnectionError as exc:
            label, mine = "real-error", exc.args == (i,)
        except CircuitOpenError as exc:
            label, mine = f"refused-{exc.state}", exc.breaker == brk.name
        except BulkheadFull as exc:
            label, mine = "bulkhead-full", exc.limit == brk.config.max_in_flight
        else:
            label, mine = "ok", result == i
        assert mine, f"caller {i} got an answer that was not its own ({label})"
        return label

    outcomes = await asyncio.gather(*(caller(i) for i in range(n)))
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    return counts


def test_ten_thousand_tasks_against_a_failing_dependency() -> None:
    clock = FakeClock()
    brk = CircuitBreaker(
        "storm",
        max_in_flight=5,
        window=5,
        min_calls=5,
        half_open_calls=3,
        open_seconds=30,
        clock=clock,
        bus=EventBus(),
    )

    async def main() -> None:
        # Closed with a bulkhead: only 5 of 10,000 reach the dependency; they show it is down.
        dep = Dependency()
        counts = await storm(brk, dep)
        assert len(dep.reached) == 5 and dep.peak == 5
        assert counts == {"real-error": 5, "bulkhead-full": 9_995}
        assert brk.state_name == "open"

        # Open: nobody reaches it.
        dep = Dependency()
        counts = await storm(brk, dep)
        assert dep.reached == []
        assert counts == {"refused-open": 10_000}

        # Half-open: exactly half_open_calls probes reach it; their failure opens the breaker again.
        clock.advance(30)
        dep = Dependency()
        counts = await storm(brk, dep)
        assert len(dep.reached) == 3 and dep.peak == 3
        assert counts == {"real-error": 3, "refused-half_open": 9_997}
        assert brk.state_name == "open"

        # Half-open again, and the dependency is back: 3 probes succeed and close the breaker.
        clock.advance(60)
        dep = Dependency(fail=False)
        counts = await storm(brk, dep)
        assert len(dep.reached) == 3
        assert counts == {"ok": 3, "refused-half_open": 9_997}
        assert brk.state_name == "closed"

    asyncio.run(main())
    assert brk.metrics().rejected == 9_995 + 10_000 + 9_997 + 9_997


def test_threads_and_asyncio_at_once_count_every_outcome() -> None:
    # With permits (max_in_flight) every outcome is recorded under the lock: the counts are exact.
    brk = CircuitBreaker("mixed", window=100_000, min_calls=100_000, max_in_flight=10_000, bus=EventBus())

    def flaky(i: int) -> int:
        if i % 10 == 0:
            raise TimeoutError(i)
        return i

    async def aflaky(i: int) -> int:
        await asyncio.sleep(0)
        return flaky(i)

    def thread_work() -> None:
        for i in range(2_000):
            try:
                brk.call(flaky, i)
            except TimeoutError:
                pass

    async def async_work() -> None:
        async def one(i: int) -> None:
            try:
                await brk.acall(aflaky, i)
            except TimeoutError:
                pass

        await asyncio.gather(*(one(i) for i in range(2_000)))

    threads = [threading.Thread(target=thread_work) for _ in range(3)]
    for t in threads:
        t.start()
    asyncio.run(async_work())
    for t in threads:
        t.join(timeout=30)
    m = brk.metrics()
    assert (m.calls, m.failures, m.in_flight) == (8_000, 800, 0)


def run_preempted(work: Callable[[], None], threads: int) -> None:
    """Run ``work`` on ``threads`` threads that lose the GIL every microsecond (inside locks too)."""
    pool = [threading.Thread(target=work) for _ in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in pool)


def test_fast_path_under_threads_counts_every_outcome_exactly() -> None:
    # Successes are bumped on a Tally, failures recorded by whoever holds the lock (a thread that finds
    # it taken leaves its failure to the holder). A tiny switch interval makes threads lose the GIL inside
    # the lock all the time, so the hand-over is exercised thousands of times.
    brk = CircuitBreaker("fast-mixed", window=100_000, min_calls=100_000, bus=EventBus())

    def flaky(i: int) -> int:
        if i % 3 == 0:
            raise TimeoutError(i)
        return i

    def work() -> None:
        for i in range(3_000):
            try:
                brk.call(flaky, i)
            except TimeoutError:
                pass

    run_preempted(work, 8)
    m = brk.metrics()
    assert (m.calls, m.failures, m.state) == (24_000, 8_000, "closed")


def test_a_trip_decided_by_another_thread_still_opens_the_breaker() -> None:
    # Eight threads fail at once against a breaker that opens at 50 failures in a row: whichever thread
    # records the 50th, the breaker opens, and every later call is refused.
    brk = CircuitBreaker(
        "fast-trip", consecutive_failures=50, window=1_000, min_calls=1_000, failure_rate=100, bus=EventBus()
    )
    refused = threading.Event()

    def down() -> None:
        raise ConnectionError("down")

    def work() -> None:
        for _ in range(1_000):
            try:
                brk.call(down)
            except ConnectionError:
                pass
            except CircuitOpenError:
                refused.set()
                return

    run_preempted(work, 8)
    assert refused.is_set()
    assert brk.state is BreakerState.OPEN
    assert brk.metrics().consecutive_failures >= 50
