"""Success-path cost of the concurrency limit, the rate limit and fault injection, beside their Python peers.

Run: ``python benchmarks/bench_strategies.py`` (about half a minute). One run, plain ``timeit`` (best of
several repeats, timed by this thread's CPU time so that other processes' load stays out of the figures); each row is nanoseconds per call and the ratio to a bare ``functools.wraps`` passthrough
(sync) or an awaited passthrough coroutine (async), so the numbers compare on any machine.

The last table prices a fleet-wide limit on one machine (``shared=SqliteSharedLimits``): a SQLite
transaction per token, two per slot (take and give back), on the disk of the machine running it.

Peers: ``threading.Semaphore`` / ``asyncio.Semaphore`` (a bare bulkhead without queue bound, timeout or
events), ``aiolimiter`` (an asyncio leaky bucket), ``limits`` (moving / fixed window, in memory) and
``pyrate-limiter`` (in-memory bucket). Every limit is set so high that no call is ever refused: this is the
cost a healthy call pays.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

import aiolimiter
import limits
import pyrate_limiter

from bounceback import (
    AdaptiveThrottle,
    CircuitBreaker,
    ConcurrencyLimiter,
    FaultInjector,
    Policy,
    RateLimiter,
)
from bounceback.events import EventBus
from bounceback.stores import SqliteSharedLimits

REPEAT = 7
NUMBER = 20_000
HUGE = 1_000_000_000
SLOTS = 1_000_000


def per_op(
    fn: Callable[[], Any], number: int = NUMBER, clock: Callable[[], float] = time.thread_time
) -> float:
    # This thread's CPU time, not the wall clock: on a shared machine other processes' load stays out of it
    # (the wall clock is used where waiting is part of the cost: the shared table's disk writes).
    timer = timeit.Timer(fn, timer=clock)
    gc.collect()
    return min(timer.repeat(repeat=REPEAT, number=number)) / number * 1e9


def per_op_async(make: Callable[[], Awaitable[Any]], number: int = NUMBER) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(REPEAT):
            started = time.thread_time()
            for _ in range(number):
                await make()
            best = min(best, time.thread_time() - started)
        return best / number * 1e9

    gc.collect()
    return asyncio.run(run())


def work() -> int:
    return 1


async def awork() -> int:
    return 1


def passthrough(fn: Callable[[], int]) -> Callable[[], int]:
    @functools.wraps(fn)
    def wrapper() -> int:
        return fn()

    return wrapper


def apassthrough(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    @functools.wraps(fn)
    async def wrapper() -> int:
        return await fn()

    return wrapper


def quiet() -> dict[str, Any]:
    """Policy arguments that keep the comparison to the strategy: a bus nobody listens to, no budget."""
    return {"bus": EventBus(), "budget": None}


def sync_rows() -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    rows.append(("passthrough (functools.wraps)", per_op(passthrough(work))))
    rows.append(("Policy() retry only", per_op(Policy("b-plain", **quiet())(work))))

    limiter = ConcurrencyLimiter(SLOTS)
    rows.append(("ConcurrencyLimiter as decorator", per_op(limiter(work))))
    sem = threading.BoundedSemaphore(HUGE)

    def with_semaphore() -> int:
        with sem:
            return work()

    rows.append(("  peer: threading.BoundedSemaphore", per_op(with_semaphore)))
    rows.append(
        ("Policy(limiter=...)", per_op(Policy("b-lim", limiter=ConcurrencyLimiter(SLOTS), **quiet())(work)))
    )

    rate = RateLimiter(HUGE, burst=HUGE)
    rows.append(("RateLimiter as decorator", per_op(rate(work))))
    rows.append(
        (
            "Policy(rate_limit=...)",
            per_op(Policy("b-rate", rate_limit=RateLimiter(HUGE, burst=HUGE), **quiet())(work)),
        )
    )
    moving = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())
    fixed = limits.strategies.FixedWindowRateLimiter(limits.storage.MemoryStorage())
    item = limits.parse(f"{HUGE}/second")

    def with_limits_moving() -> int:
        if not moving.hit(item, "op"):
            raise RuntimeError("refused")
        return work()

    def with_limits_fixed() -> int:
        if not fixed.hit(item, "op"):
            raise RuntimeError("refused")
        return work()

    rows.append(("  peer: limits MovingWindowRateLimiter", per_op(with_limits_moving, 5_000)))
    rows.append(("  peer: limits FixedWindowRateLimiter", per_op(with_limits_fixed, 5_000)))
    pyrate = pyrate_limiter.Limiter(pyrate_limiter.Rate(HUGE, pyrate_limiter.Duration.SECOND))

    def with_pyrate() -> int:
        if not pyrate.try_acquire("op", blocking=False):
            raise RuntimeError("refused")
        return work()

    rows.append(("  peer: pyrate-limiter Limiter", per_op(with_pyrate, 5_000)))

    off = FaultInjector("b-chaos-off")
    rows.append(("FaultInjector, off (the default)", per_op(off(work))))
    on = FaultInjector("b-chaos-on", enabled=True, bus=EventBus())
    rows.append(("FaultInjector, on with no fault drawn", per_op(on(work))))

    rows.append(
        (
            "Policy(throttle=...)",
            per_op(Policy("b-thr", throttle=AdaptiveThrottle(name="b-thr"), **quiet())(work)),
        )
    )
    rows.append(
        ("Policy(breaker=...)", per_op(Policy("b-brk", breaker=CircuitBreaker("b-brk"), **quiet())(work)))
    )
    everything = Policy(
        "b-all",
        rate_limit=RateLimiter(HUGE, burst=HUGE),
        limiter=ConcurrencyLimiter(SLOTS),
        throttle=AdaptiveThrottle(name="b-all"),
        breaker=CircuitBreaker("b-all"),
        **quiet(),
    )
    rows.append(("Policy(rate + limiter + throttle + breaker)", per_op(everything(work))))

    def peers_together() -> int:
        # The nearest hand-assembled chain from peers: a token bucket (limits) around a semaphore.
        if not fixed.hit(item, "chain"):
            raise RuntimeError("refused")
        with sem:
            return work()

    rows.append(("  peer: limits fixed window + BoundedSemaphore", per_op(peers_together, 5_000)))
    return rows


def shared_rows(folder: str) -> list[tuple[str, float]]:
    """The price of a fleet-wide limit on one machine: every call is a SQLite transaction (two for a slot)."""
    limits = SqliteSharedLimits(f"{folder}/bench.db")
    wall = time.perf_counter
    rows: list[tuple[str, float]] = [("passthrough (functools.wraps)", per_op(passthrough(work), clock=wall))]
    shared_slots = ConcurrencyLimiter(SLOTS, name="b-shared", shared=limits)
    rows.append(("ConcurrencyLimiter(shared=SQLite) decorator", per_op(shared_slots(work), 500, wall)))
    shared_rate = RateLimiter(HUGE, burst=HUGE, name="b-shared", shared=limits)
    rows.append(("RateLimiter(shared=SQLite) decorator", per_op(shared_rate(work), 500, wall)))
    limits.close()
    return rows


def async_rows() -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    rows.append(("async passthrough", per_op_async(apassthrough(awork))))
    limiter = ConcurrencyLimiter(SLOTS)
    rows.append(("ConcurrencyLimiter as decorator", per_op_async(limiter(awork))))
    holder: dict[str, Any] = {}

    async def with_semaphore() -> int:
        sem = holder.get("sem")
        if sem is None:
            sem = holder["sem"] = asyncio.Semaphore(HUGE)
        async with sem:
            return await awork()

    rows.append(("  peer: asyncio.Semaphore", per_op_async(with_semaphore)))
    rows.append(
        (
            "Policy(limiter=...)",
            per_op_async(Policy("a-lim", limiter=ConcurrencyLimiter(SLOTS), **quiet())(awork)),
        )
    )
    rate = RateLimiter(HUGE, burst=HUGE)
    rows.append(("RateLimiter as decorator", per_op_async(rate(awork))))

    async def with_aiolimiter() -> int:
        bucket = holder.get("aio")
        if bucket is None:
            bucket = holder["aio"] = aiolimiter.AsyncLimiter(HUGE, 1)
        async with bucket:
            return await awork()

    rows.append(("  peer: aiolimiter.AsyncLimiter", per_op_async(with_aiolimiter)))
    rows.append(
        (
            "Policy(rate_limit=...)",
            per_op_async(Policy("a-rate", rate_limit=RateLimiter(HUGE, burst=HUGE), **quiet())(awork)),
        )
    )
    everything = Policy(
        "a-all",
        rate_limit=RateLimiter(HUGE, burst=HUGE),
        limiter=ConcurrencyLimiter(SLOTS),
        throttle=AdaptiveThrottle(name="a-all"),
        breaker=CircuitBreaker("a-all"),
        **quiet(),
    )
    rows.append(("Policy(rate + limiter + throttle + breaker)", per_op_async(everything(awork))))

    async def peers_together() -> int:
        bucket, sem = holder.get("aio-chain"), holder.get("sem-chain")
        if bucket is None or sem is None:
            bucket = holder["aio-chain"] = aiolimiter.AsyncLimiter(HUGE, 1)
            sem = holder["sem-chain"] = asyncio.Semaphore(HUGE)
        async with bucket, sem:
            return await awork()

    rows.append(("  peer: aiolimiter + asyncio.Semaphore", per_op_async(peers_together)))
    return rows


def show(title: str, rows: list[tuple[str, float]]) -> None:
    base = rows[0][1]
    print(f"\n{title}")
    print(f"{'path':48} {'ns/call':>9} {'x base':>8}")
    for name, ns in rows:
        print(f"{name:48} {ns:9.0f} {ns / base:7.2f}x")


def main() -> None:
    import tempfile

    show("sync success path (ratio to a functools.wraps passthrough)", sync_rows())
    show("async success path (ratio to an awaited passthrough)", async_rows())
    with tempfile.TemporaryDirectory() as folder:
        show("shared limits on one machine (SQLite home database)", shared_rows(folder))


if __name__ == "__main__":
    main()
