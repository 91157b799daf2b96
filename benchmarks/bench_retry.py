"""Retry overhead, bounceback beside tenacity, stamina and backoff, in one run.

Measures (nanoseconds per call, best of several repeats, and the ratio to the reference named):

1. the success path of a retry decorator, sync and async, against a bare ``functools.wraps`` passthrough;
2. one failed attempt's retry decision (the function fails once, then succeeds; every wait is zero), against
   a hand-written minimal retry loop doing the same.

Run: ``python benchmarks/bench_retry.py`` (``--quick`` for fewer repeats). Figures vary by machine; the
ratios are what the budget in shared/DESIGN.md speaks of.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
import timeit
from collections.abc import Callable
from typing import Any

import backoff as backoff_lib
import stamina
import tenacity

import bounceback
from bounceback import Backoff

logging.getLogger("backoff").disabled = True
ZERO = Backoff("constant", initial=0, max_delay=0, jitter="none")


def passthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def minimal_retry(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The least a retry loop can do: try, catch, count, try again."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(5):
            try:
                return fn(*args, **kwargs)
            except ConnectionError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    return wrapper


def work(x: int) -> int:
    return x


class FailEveryOther:
    """Fails on odd calls, succeeds on even ones: each wrapped call is one failure plus one success."""

    __name__ = "fail_every_other"  # backoff's logging handler reads the target's name

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, x: int) -> int:
        self.n += 1
        if self.n & 1:
            raise ConnectionResetError("reset")
        return x


def measure(fn: Callable[[], Any], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def measure_async(make: Callable[[], Any], number: int, repeat: int) -> float:
    async def loop() -> None:
        for _ in range(number):
            await make()

    best = float("inf")
    for _ in range(repeat):
        runner = asyncio.Runner()
        with runner:
            t0 = timeit.default_timer()
            runner.run(loop())
            best = min(best, timeit.default_timer() - t0)
    return best / number * 1e9


def table(title: str, rows: list[tuple[str, float]], reference: str) -> None:
    ref = dict(rows)[reference]
    print(f"\n{title}")
    print(f"  {'implementation':<44}{'ns/call':>10}{'ratio':>9}")
    for name, ns in rows:
        print(f"  {name:<44}{ns:>10.0f}{ns / ref:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    args = parser.parse_args()
    number, repeat = (20_000, 3) if args.quick else (200_000, 7)

    success = {
        "bare call": work,
        "functools.wraps passthrough (reference)": passthrough(work),
        "bounceback.retry (defaults: 30 s deadline, budget)": bounceback.retry(attempts=5)(work),
        "bounceback.retry, no deadline, no budget": bounceback.retry(attempts=5, deadline=None, budget=None)(
            work
        ),
        "tenacity.retry": tenacity.retry(stop=tenacity.stop_after_attempt(5))(work),
        "stamina.retry": stamina.retry(on=ConnectionError, attempts=5)(work),
        "backoff.on_exception": backoff_lib.on_exception(backoff_lib.expo, ConnectionError, max_tries=5)(
            work
        ),
    }
    rows = [(name, measure(lambda f=f: f(1), number, repeat)) for name, f in success.items()]
    table("success path, sync", rows, "functools.wraps passthrough (reference)")

    async def awork(x: int) -> int:
        return x

    def apassthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def wrapper(*a: Any, **k: Any) -> Any:
            return await fn(*a, **k)

        return wrapper

    asuccess = {
        "bare await": awork,
        "async passthrough (reference)": apassthrough(awork),
        "bounceback.retry": bounceback.retry(attempts=5)(awork),
        "tenacity.retry": tenacity.retry(stop=tenacity.stop_after_attempt(5))(awork),
        "stamina.retry": stamina.retry(on=ConnectionError, attempts=5)(awork),
        "backoff.on_exception": backoff_lib.on_exception(backoff_lib.expo, ConnectionError, max_tries=5)(
            awork
        ),
    }
    anumber = max(number // 4, 5_000)
    rows = [(name, measure_async(lambda f=f: f(1), anumber, repeat)) for name, f in asuccess.items()]
    table("success path, async", rows, "async passthrough (reference)")

    stamina.set_testing(True, attempts=5)  # stamina's own switch: no waits
    stamina.instrumentation.set_on_retry_hooks([])  # keep its default hooks from printing every retry
    failing = {
        "hand-written minimal loop (reference)": minimal_retry(FailEveryOther()),
        # The default budget (20% of calls) rightly refuses retries for a function failing every other
        # call; ratio 1 keeps the budget's cost in the measurement without its refusals.
        "bounceback.retry, zero waits, budget": bounceback.retry(
            attempts=5, backoff=ZERO, budget=bounceback.RetryBudget(1.0)
        )(FailEveryOther()),
        "bounceback.retry, zero waits, no budget": bounceback.retry(attempts=5, backoff=ZERO, budget=None)(
            FailEveryOther()
        ),
        "tenacity, wait_none": tenacity.retry(stop=tenacity.stop_after_attempt(5), wait=tenacity.wait_none())(
            FailEveryOther()
        ),
        "stamina, testing mode": stamina.retry(on=ConnectionError, attempts=5)(FailEveryOther()),
        "backoff, zero wait": backoff_lib.on_exception(
            backoff_lib.constant, ConnectionError, max_tries=5, interval=0, jitter=None
        )(FailEveryOther()),
    }
    fnumber = max(number // 10, 2_000)
    rows = [(name, measure(lambda f=f: f(1), fnumber, repeat)) for name, f in failing.items()]
    table("one failed attempt + retry decision (waits zero)", rows, "hand-written minimal loop (reference)")
    stamina.set_testing(False)
    print(f"\npython {sys.version.split()[0]}, bounceback {bounceback.__version__}")


if __name__ == "__main__":
    main()
