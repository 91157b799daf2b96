"""Circuit breaker benchmarks: bounceback beside pybreaker, circuitbreaker, purgatory and aiobreaker.

Run: ``python benchmarks/bench_breaker.py`` (about a minute). Everything is measured in one run with plain
``timeit`` (best of several repeats), and reported as nanoseconds per operation and as a ratio to the
baseline of its group, so the numbers compare on any machine:

* success path, sync: a bare ``functools.wraps`` passthrough vs ``Policy(retry + breaker)`` and the peers;
* success path, async: the same with ``async def`` (awaited in a loop on one event loop);
* state check: ``obj.attr; time.monotonic()`` vs ``breaker.state`` (closed, and open before its time);
* rejection while open: a hand-written ``if now < until: raise CircuitOpenError(...)`` vs the breaker
  refusing a call, and the memory kept after 100,000 rejections.

Budgets (DESIGN.md): success path within 2x, state check within 2x, rejection within 1.2x.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import statistics
import time
import timeit
import tracemalloc
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiobreaker
import circuitbreaker
import purgatory
import pybreaker

from bounceback import CircuitBreaker, CircuitOpenError, Policy
from bounceback.events import EventBus

REPEAT = 7
ROWS: list[tuple[str, str, float, float | None, str]] = []


def per_op(fn: Callable[[], Any], number: int) -> float:
    """Best time of one call of ``fn`` in nanoseconds."""
    timer = timeit.Timer(fn)
    gc.collect()
    return min(timer.repeat(repeat=REPEAT, number=number)) / number * 1e9


def per_op_stmt(stmt: str, env: dict[str, Any], number: int) -> float:
    timer = timeit.Timer(stmt, globals=env)
    gc.collect()
    return min(timer.repeat(repeat=REPEAT, number=number)) / number * 1e9


def per_op_async(make: Callable[[], Awaitable[Any]], number: int) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(REPEAT):
            started = time.perf_counter()
            for _ in range(number):
                await make()
            best = min(best, time.perf_counter() - started)
        return best / number * 1e9

    gc.collect()
    return asyncio.run(run())


def row(group: str, name: str, ns: float, base: float | None, budget: str = "") -> None:
    ROWS.append((group, name, ns, None if base is None else ns / base, budget))


def passthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def apassthrough(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    return wrapper


def work() -> int:
    return 1


async def awork() -> int:
    return 1


def bench_success_sync() -> None:
    n = 200_000
    quiet = EventBus()  # nobody listens, as in production without subscribers
    base = per_op(passthrough(work), n)
    row("success, sync", "bare functools.wraps passthrough", base, base)
    brk = CircuitBreaker("bench-sync", bus=quiet)
    policy = Policy("bench-sync", breaker=brk, attempts=3, bus=quiet)
    row("success, sync", "bounceback Policy(retry + breaker)", per_op(policy(work), n), base, "<= 2x")
    row("success, sync", "bounceback Policy(retry only)", per_op(Policy("r", bus=quiet)(work), n), base)
    row("success, sync", "bounceback CircuitBreaker decorator", per_op(brk(work), n), base)
    row(
        "success, sync",
        "pybreaker",
        per_op(pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)(work), n),
        base,
    )
    row(
        "success, sync",
        "circuitbreaker",
        per_op(circuitbreaker.CircuitBreaker(failure_threshold=5)(work), n),
        base,
    )
    pfactory = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    row("success, sync", "purgatory", per_op(pfactory("bench")(work), n // 4), base)


def bench_success_async() -> None:
    n = 100_000
    quiet = EventBus()
    base = per_op_async(apassthrough(awork), n)
    row("success, async", "bare async passthrough", base, base)
    brk = CircuitBreaker("bench-async", bus=quiet)
    policy = Policy("bench-async", breaker=brk, attempts=3, bus=quiet)
    row("success, async", "bounceback Policy(retry + breaker)", per_op_async(policy(awork), n), base, "<= 2x")
    row("success, async", "bounceback CircuitBreaker decorator", per_op_async(brk(awork), n), base)
    aio = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=60))
    row("success, async", "aiobreaker", per_op_async(aio(awork), n // 4), base)
    row(
        "success, async",
        "circuitbreaker",
        per_op_async(circuitbreaker.CircuitBreaker(failure_threshold=5)(awork), n),
        base,
    )
    afactory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)

    async def purg() -> int:
        async with await afactory.get_breaker("bench"):
            return await awork()

    row("success, async", "purgatory", per_op_async(purg, n // 10), base)


class Holder:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = "closed"


def bench_state_check() -> None:
    n = 1_000_000
    env: dict[str, Any] = {"o": Holder(), "monotonic": time.monotonic}
    base = per_op_stmt("o.state; monotonic()", env, n)
    row("state check", "attribute read + time.monotonic()", base, base)
    closed = CircuitBreaker("bench-state", bus=EventBus())
    opened = CircuitBreaker("bench-state-open", bus=EventBus(), open_seconds=3600)
    opened.force_open()
    opened.force_close()
    for _ in range(opened.config.min_calls):
        with contextlib.suppress(ConnectionError):
            opened.call(_down)
    assert opened.state_name == "open"
    row(
        "state check",
        "bounceback breaker.state (closed)",
        per_op_stmt("b.state", {"b": closed}, n),
        base,
        "<= 2x",
    )
    row(
        "state check",
        "bounceback breaker.state (open)",
        per_op_stmt("b.state", {"b": opened}, n),
        base,
        "<= 2x",
    )
    py = pybreaker.CircuitBreaker()
    row("state check", "pybreaker .current_state", per_op_stmt("b.current_state", {"b": py}, n // 4), base)
    cb = circuitbreaker.CircuitBreaker()
    row("state check", "circuitbreaker .state", per_op_stmt("b.state", {"b": cb}, n // 4), base)
    aio = aiobreaker.CircuitBreaker()
    row("state check", "aiobreaker .current_state", per_op_stmt("b.current_state", {"b": aio}, n // 4), base)


def _down() -> None:
    raise ConnectionError("down")


def bench_rejection() -> None:
    n = 200_000
    until = time.monotonic() + 3600
    until_wall = time.time() + 3600

    def handwritten() -> None:
        now = time.monotonic()
        if now < until:
            raise CircuitOpenError("bench-reject", "open", until_wall, until - now)

    env: dict[str, Any] = {"guard": handwritten, "E": CircuitOpenError}
    base = per_op_stmt("try:\n    guard()\nexcept E:\n    pass", env, n)
    row("rejection while open", "hand-written check + raise CircuitOpenError", base, base)
    brk = CircuitBreaker("bench-reject", bus=EventBus(), open_seconds=3600)
    for _ in range(brk.config.min_calls):
        with contextlib.suppress(ConnectionError):
            brk.call(_down)
    assert brk.state_name == "open"
    env = {"b": brk, "E": CircuitOpenError, "work": work}
    row(
        "rejection while open",
        "bounceback breaker.acquire() refusing",
        per_op_stmt("try:\n    b.acquire()\nexcept E:\n    pass", env, n),
        base,
        "<= 1.2x",
    )
    row(
        "rejection while open",
        "bounceback breaker.call(fn) refusing",
        per_op_stmt("try:\n    b.call(work)\nexcept E:\n    pass", env, n),
        base,
    )
    py = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
    with contextlib.suppress(pybreaker.CircuitBreakerError):
        py.call(_down)
    env = {"b": py, "E": pybreaker.CircuitBreakerError, "work": work}
    row(
        "rejection while open",
        "pybreaker",
        per_op_stmt("try:\n    b.call(work)\nexcept E:\n    pass", env, n // 4),
        base,
    )
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=3600)
    wrapped = cb(_down)
    with contextlib.suppress(ConnectionError):
        wrapped()
    env = {"f": wrapped, "E": circuitbreaker.CircuitBreakerError}
    row(
        "rejection while open",
        "circuitbreaker",
        per_op_stmt("try:\n    f()\nexcept E:\n    pass", env, n // 4),
        base,
    )
    pfactory = purgatory.SyncCircuitBreakerFactory(default_threshold=1, default_ttl=3600)
    pwrapped = pfactory("bench-reject")(_down)
    with contextlib.suppress(ConnectionError):
        pwrapped()
    from purgatory.domain.model import OpenedState

    env = {"f": pwrapped, "E": OpenedState}
    row(
        "rejection while open",
        "purgatory",
        per_op_stmt("try:\n    f()\nexcept E:\n    pass", env, n // 20),
        base,
    )

    # No memory kept per rejection: what is still allocated after 100,000 of them?
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(100_000):
        with contextlib.suppress(CircuitOpenError):
            brk.acquire()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    kept = sum(s.size_diff for s in after.compare_to(before, "filename") if "bounceback" in str(s.traceback))
    print(f"memory kept by bounceback after 100,000 rejections: {kept} bytes")


def main() -> None:
    warnings.simplefilter("ignore")  # peers' deprecation warnings are not ours to judge here
    print("running (about a minute)...")
    bench_success_sync()
    bench_success_async()
    bench_state_check()
    bench_rejection()
    width = max(len(name) for _, name, _, _, _ in ROWS)
    group = None
    print()
    print(f"{'':2}{'path':<{width}}  {'ns/op':>9}  {'ratio':>7}  budget")
    for g, name, ns, ratio, budget in ROWS:
        if g != group:
            print(f"\n{g}")
            group = g
        shown = f"{ratio:6.2f}x" if ratio is not None else ""
        ok = ""
        if budget:
            limit = float(budget.split()[-1].rstrip("x"))
            ok = "ok" if ratio is not None and ratio <= limit else "OVER"
        print(f"  {name:<{width}}  {ns:9.1f}  {shown:>7}  {budget} {ok}")
    print()
    print(
        f"(best of {REPEAT} repeats; median ratio of the budgeted rows: "
        f"{statistics.median(r for _, _, _, r, b in ROWS if b and r is not None):.2f}x)"
    )


if __name__ == "__main__":
    main()
