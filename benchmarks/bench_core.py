"""Issue 20's "Done when", measured in ONE run: bounceback beside its references and its peers.

Every figure is printed as a value (ns per call, bytes, seconds) and as a ratio to the reference named in
its group, with the budget of issue 20 / shared/DESIGN.md beside it and PASS or MISS. Groups:

1. success path, sync and async: a bare ``functools.wraps`` passthrough vs ``retry()`` (defaults: 5
   attempts, a 30 s deadline, a per-operation retry budget), ``retry(deadline=None, budget=None)``,
   ``Policy(retry + CircuitBreaker)``, tenacity, stamina, backoff, pybreaker, circuitbreaker;
2. one transient failure then success, every wait zero: a hand-written 3-try loop vs ``@retry`` and the
   peers; a hand-written loop around a minimal hand-written breaker vs ``Policy(retry + breaker)``, and the
   same loop around bounceback's, pybreaker's and circuitbreaker's breakers (each breaker's own share);
3. refusing a call while open, decorated: a minimal hand-written breaker raising its own exception vs
   bounceback, pybreaker, circuitbreaker;
4. the open-state check: an attribute read plus ``time.monotonic()`` vs ``breaker.state``;
5. 16 threads x 20k mixed calls (some fail transiently, zero waits) through ONE Policy vs a hand-written
   retry loop, with the counts checked (the breaker's metrics against the dependency's own counters);
6. memory kept by one object (tracemalloc, averaged over 1,000 live objects) and the time to create one
   (measured last: it makes tens of thousands of operations, each keeping its retry budget).

A breaker shared through a batching store (issue 21) is measured beside a local one by ``bench_shared.py``.

Timing is ``timeit``'s way: statements timed in a loop with the garbage collector off, each row's loop sized
to a fixed time, best of several repeats, and the rows of a group run in a fresh shuffled order in every
repeat so that a busy machine slows all of them alike. The clock is the CPU time of the measuring thread
(``time.thread_time``; the process's for the thread load), so time spent running other people's work on a
shared machine is not counted; wall time is shown beside it for the thread load. Budgets are checked here,
never in tests.

Run: ``python benchmarks/bench_core.py`` (about a minute; ``--quick`` for a smoke run of ~10 s).
Loopback only: nothing here touches the network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import logging
import math
import random
import sys
import threading
import time
import timeit
import tracemalloc
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import backoff as backoff_lib
import circuitbreaker
import pybreaker
import stamina
import tenacity

import bounceback
from bounceback import Backoff, BreakerState, CircuitBreaker, CircuitOpenError, Policy, RetryBudget

logging.getLogger("backoff").disabled = True
ZERO = Backoff("constant", initial=0, max_delay=0, jitter="none")
monotonic = time.monotonic


# -- settings of one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """How hard to measure: the time one timed loop should take, repeats, and the thread load."""

    target: float = 0.03
    repeat: int = 15
    objects: int = 1_000
    threads: int = 16
    calls: int = 20_000
    thread_repeat: int = 3
    rng: random.Random = field(default_factory=lambda: random.Random(20))


# -- references: the least code that does the job --------------------------------------------------------


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


def handwritten_retry(fn: Callable[..., Any], tries: int = 3) -> Callable[..., Any]:
    """A hand-written retry loop: try, catch a transient error, try again, up to ``tries`` times."""
    last = tries - 1

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(tries):
            try:
                return fn(*args, **kwargs)
            except ConnectionError:
                if attempt == last:
                    raise
        raise AssertionError("unreachable")

    return wrapper


class MiniOpen(Exception):
    """The minimal breaker's refusal: its name and the seconds until it lets calls through again."""


class MiniBreaker:
    """A minimal hand-written breaker: opens after ``threshold`` failures in a row, refuses until a time."""

    __slots__ = ("failures", "name", "open_seconds", "open_until", "threshold")

    def __init__(self, name: str, threshold: int = 5, open_seconds: float = 30.0) -> None:
        self.name = name
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.failures = 0
        self.open_until = 0.0

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.open_until:
            now = monotonic()
            if now < self.open_until:
                raise MiniOpen(self.name, self.open_until - now)
            self.open_until = 0.0
        try:
            result = fn(*args)
        except Exception:
            self.failures += 1
            if self.failures >= self.threshold:
                self.open_until = monotonic() + self.open_seconds
            raise
        self.failures = 0
        return result

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate ``fn`` (the check inlined, as a decorator worth its name would do)."""
        brk = self

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if brk.open_until:
                now = monotonic()
                if now < brk.open_until:
                    raise MiniOpen(brk.name, brk.open_until - now)
                brk.open_until = 0.0
            try:
                result = fn(*args, **kwargs)
            except Exception:
                brk.failures += 1
                if brk.failures >= brk.threshold:
                    brk.open_until = monotonic() + brk.open_seconds
                raise
            brk.failures = 0
            return result

        return wrapper


def handwritten_retry_around(brk: Any, fn: Callable[..., Any], tries: int = 3) -> Callable[..., Any]:
    """The hand-written retry loop, every attempt through ``brk.call`` (the minimal breaker, or a peer's)."""
    last = tries - 1
    call = brk.call

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        for attempt in range(tries):
            try:
                return call(fn, *args)
            except ConnectionError:
                if attempt == last:
                    raise
        raise AssertionError("unreachable")

    return wrapper


# -- the functions called ---------------------------------------------------------------------------------


def work(x: int) -> int:
    return x


async def awork(x: int) -> int:
    return x


def down() -> None:
    raise ConnectionError("down")


class FailEveryOther:
    """Fails on odd calls, succeeds on even ones: each wrapped call is one failure, then one success."""

    __name__ = "fail_every_other"  # backoff's handlers and bounceback's operation name read it
    __qualname__ = "fail_every_other"

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, x: int) -> int:
        self.n += 1
        if self.n & 1:
            raise ConnectionResetError("reset")
        return x


# -- timing ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    value: float
    unit: str
    ratio: float | None
    budget: float | None = None  # the largest ratio (or value, for absolute budgets) allowed
    absolute: bool = False  # the budget bounds the value, not the ratio
    note: str = ""
    verdict: bool | None = None  # a yes/no check (counts exact) instead of a number against a budget

    @property
    def ok(self) -> bool | None:
        if self.verdict is not None:
            return self.verdict
        if self.budget is None:
            return None
        measured = self.value if self.absolute else self.ratio
        return measured is not None and measured <= self.budget


SUMMARY: list[tuple[str, Row]] = []


def sized(timer: Callable[[int], float], target: float) -> int:
    """How many loops make one timing last about ``target`` seconds."""
    number = 1
    while True:
        took = timer(number)
        if took >= target / 5:
            return max(1, int(number * target / took))
        number *= 10 if took < target / 100 else 4


def best_ns(cases: dict[str, Callable[[int], float]], run: Run) -> dict[str, float]:
    """Best time per loop in ns of each case, the cases interleaved in a new shuffled order per repeat."""
    numbers = {name: sized(timer, run.target) for name, timer in cases.items()}
    best = dict.fromkeys(cases, math.inf)
    order = list(cases)
    for _ in range(run.repeat):
        run.rng.shuffle(order)
        for name in order:
            gc.collect()
            took = cases[name](numbers[name])
            best[name] = min(best[name], took / numbers[name] * 1e9)
    return best


def stmt_timer(stmt: str, env: dict[str, Any]) -> Callable[[int], float]:
    """A timer for a statement run ``n`` times in timeit's loop (no call of a lambda in between)."""
    timer = timeit.Timer(stmt, timer=time.thread_time, globals=env)
    return timer.timeit


def call_timer(fn: Callable[..., Any]) -> Callable[[int], float]:
    return stmt_timer("f(1)", {"f": fn})


def refusal_timer(fn: Callable[[], Any], error: type[BaseException]) -> Callable[[int], float]:
    return stmt_timer("try:\n    f()\nexcept E:\n    pass", {"f": fn, "E": error})


def async_timers(fns: dict[str, Callable[[int], Awaitable[Any]]]) -> tuple[asyncio.Runner, dict[str, Any]]:
    """Timers awaiting each function ``n`` times inside one event loop (the loop's overhead shared)."""
    runner = asyncio.Runner()

    async def loop(fn: Callable[[int], Awaitable[Any]], n: int) -> float:
        enabled = gc.isenabled()
        gc.disable()
        try:
            started = time.thread_time()
            for _ in range(n):
                await fn(1)
            return time.thread_time() - started
        finally:
            if enabled:
                gc.enable()

    def timer(fn: Callable[[int], Awaitable[Any]]) -> Callable[[int], float]:
        return lambda n: runner.run(loop(fn, n))

    return runner, {name: timer(fn) for name, fn in fns.items()}


# -- output -----------------------------------------------------------------------------------------------


def table(title: str, rows: list[Row], reference: str, key: str) -> None:
    print(f"\n{title}")
    print(f"  ratio to: {reference}")
    width = max(44, *(len(r.name) for r in rows))
    print(f"  {'implementation':<{width}}  {'value':>12}  {'ratio':>8}  {'budget':>9}  verdict")
    for r in rows:
        value = f"{r.value:,.0f} {r.unit}" if r.unit != "s" else f"{r.value:.3f} s"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        budget = ""
        if r.budget is not None:
            budget = f"<= {r.budget:g} {r.unit}" if r.absolute else f"<= {r.budget:g}x"
        verdict = {None: "", True: "PASS", False: "MISS"}[r.ok]
        note = f"  ({r.note})" if r.note else ""
        print(f"  {r.name:<{width}}  {value:>12}  {ratio:>8}  {budget:>9}  {verdict}{note}")
        if r.budget is not None:
            SUMMARY.append((f"{key}: {r.name}", r))


def rows_from(best: dict[str, float], reference: str, budgets: dict[str, float]) -> list[Row]:
    ref = best[reference]
    return [Row(name, ns, "ns", ns / ref, budgets.get(name)) for name, ns in best.items()]


# -- 1. success path --------------------------------------------------------------------------------------

REF_PASS = "functools.wraps passthrough (reference)"
RETRY_DEFAULTS = "bounceback.retry() defaults (30 s deadline, budget)"
RETRY_BARE = "bounceback.retry(deadline=None, budget=None)"
POLICY_BREAKER = "bounceback Policy(retry + CircuitBreaker)"


def success_sync(run: Run) -> None:
    fns: dict[str, Callable[..., Any]] = {
        "bare call": work,
        REF_PASS: passthrough(work),
        RETRY_DEFAULTS: bounceback.retry()(work),
        RETRY_BARE: bounceback.retry(deadline=None, budget=None)(work),
        POLICY_BREAKER: Policy("bench-success-sync", breaker=CircuitBreaker("bench-success-sync"))(work),
        "tenacity.retry(stop_after_attempt(5))": tenacity.retry(stop=tenacity.stop_after_attempt(5))(work),
        "stamina.retry(on=ConnectionError)": stamina.retry(on=ConnectionError, attempts=5)(work),
        "backoff.on_exception(expo, max_tries=5)": backoff_lib.on_exception(
            backoff_lib.expo, ConnectionError, max_tries=5
        )(work),
        "pybreaker.CircuitBreaker": pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)(work),
        "circuitbreaker.CircuitBreaker": circuitbreaker.CircuitBreaker(failure_threshold=5)(work),
    }
    best = best_ns({name: call_timer(fn) for name, fn in fns.items()}, run)
    budgets = {RETRY_DEFAULTS: 1.4, RETRY_BARE: 1.4, POLICY_BREAKER: 1.7}
    table(
        "1a. success path, sync (ns per call)", rows_from(best, REF_PASS, budgets), REF_PASS, "success sync"
    )


def success_async(run: Run) -> None:
    ref = "async passthrough (reference)"
    fns: dict[str, Callable[[int], Awaitable[Any]]] = {
        "bare await": awork,
        ref: apassthrough(awork),
        RETRY_DEFAULTS: bounceback.retry()(awork),
        RETRY_BARE: bounceback.retry(deadline=None, budget=None)(awork),
        POLICY_BREAKER: Policy("bench-success-async", breaker=CircuitBreaker("bench-success-async"))(awork),
        "tenacity.retry(stop_after_attempt(5))": tenacity.retry(stop=tenacity.stop_after_attempt(5))(awork),
        "stamina.retry(on=ConnectionError)": stamina.retry(on=ConnectionError, attempts=5)(awork),
        "backoff.on_exception(expo, max_tries=5)": backoff_lib.on_exception(
            backoff_lib.expo, ConnectionError, max_tries=5
        )(awork),
        "circuitbreaker.CircuitBreaker": circuitbreaker.CircuitBreaker(failure_threshold=5)(awork),
    }
    runner, timers = async_timers(fns)
    with runner:
        best = best_ns(timers, run)
    budgets = {RETRY_DEFAULTS: 1.4, RETRY_BARE: 1.4, POLICY_BREAKER: 1.7}
    rows = rows_from(best, ref, budgets)
    rows.append(Row("pybreaker", math.nan, "ns", None, note="no asyncio support (tornado only)"))
    table("1b. success path, async (ns per awaited call)", rows, ref, "success async")


# -- 2. one transient failure then success ----------------------------------------------------------------


def one_failure(run: Run) -> None:
    ref = "hand-written 3-try loop (reference)"
    retry_budget = "bounceback @retry, RetryBudget(1.0)"
    stamina.set_testing(True, attempts=3)  # stamina's own switch: no waits
    stamina.instrumentation.set_on_retry_hooks([])  # its default hooks would print every retry
    try:
        fns: dict[str, Callable[..., Any]] = {
            ref: handwritten_retry(FailEveryOther()),
            # The default budget (20% of calls) rightly refuses retries of a function failing every other
            # call; a ratio of 1 keeps the budget's cost in the measurement without its refusals.
            retry_budget: bounceback.retry(attempts=3, backoff=ZERO, budget=RetryBudget(1.0))(
                FailEveryOther()
            ),
            "bounceback @retry, budget=None": bounceback.retry(attempts=3, backoff=ZERO, budget=None)(
                FailEveryOther()
            ),
            "tenacity, wait_none": tenacity.retry(
                stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none()
            )(FailEveryOther()),
            "stamina, testing mode": stamina.retry(on=ConnectionError, attempts=3)(FailEveryOther()),
            "backoff, constant interval=0": backoff_lib.on_exception(
                backoff_lib.constant, ConnectionError, max_tries=3, interval=0, jitter=None
            )(FailEveryOther()),
        }
        best = best_ns({name: call_timer(fn) for name, fn in fns.items()}, run)
    finally:
        stamina.set_testing(False)
    table(
        "2a. one transient failure then success, zero waits (ns per call = 2 attempts)",
        rows_from(best, ref, {retry_budget: 1.5}),
        ref,
        "one failure",
    )

    ref = "hand-written loop around a minimal breaker (reference)"
    policy_row = "bounceback Policy(retry + breaker), RetryBudget(1.0)"
    # Half the attempts fail, so a breaker with the default 50% limit would open: the limit is raised to
    # keep it closed (the minimal breaker counts failures in a row, and never reaches 5).
    fns = {
        ref: handwritten_retry_around(MiniBreaker("mini"), FailEveryOther()),
        policy_row: Policy(
            "bench-one-failure",
            attempts=3,
            backoff=ZERO,
            budget=RetryBudget(1.0),
            breaker=CircuitBreaker("bench-one-failure", failure_rate=90),
        )(FailEveryOther()),
        "bounceback Policy(retry + breaker), budget=None": Policy(
            "bench-one-failure-nb",
            attempts=3,
            backoff=ZERO,
            budget=None,
            breaker=CircuitBreaker("bench-one-failure-nb", failure_rate=90),
        )(FailEveryOther()),
    }
    # The breakers alone, in the same hand-written loop: the breaker's share of the failure path (its
    # bookkeeping of one failure and one success), beside the peers'.
    own = CircuitBreaker("bench-one-failure-loop", failure_rate=90)
    fns["hand-written loop around bounceback CircuitBreaker.call"] = handwritten_retry_around(
        own, FailEveryOther()
    )
    fns["hand-written loop around pybreaker.call"] = handwritten_retry_around(
        pybreaker.CircuitBreaker(fail_max=1_000_000, reset_timeout=30), FailEveryOther()
    )
    fns["hand-written loop around circuitbreaker.call"] = handwritten_retry_around(
        circuitbreaker.CircuitBreaker(failure_threshold=1_000_000), FailEveryOther()
    )
    best = best_ns({name: call_timer(fn) for name, fn in fns.items()}, run)
    for name, fn in fns.items():
        brk = getattr(getattr(fn, "policy", None), "breaker", None)
        if brk is not None and brk.state is not BreakerState.CLOSED:
            raise SystemExit(f"{name}: the breaker opened during the measurement; the row is void")
    if own.state is not BreakerState.CLOSED:
        raise SystemExit(
            "the breaker in the hand-written loop opened during the measurement; the row is void"
        )
    table(
        "2b. the same through a breaker (failure_rate=90 so the breaker stays closed)",
        rows_from(best, ref, {policy_row: 2.0}),
        ref,
        "one failure + breaker",
    )


# -- 3. refusing a call while open ------------------------------------------------------------------------


def opened_breaker(name: str) -> CircuitBreaker:
    brk = CircuitBreaker(name, open_seconds=3600, open_seconds_max=3600)
    while brk.state is BreakerState.CLOSED:
        with contextlib.suppress(ConnectionError):
            brk.call(down)
    assert brk.state is BreakerState.OPEN, brk.state
    return brk


def refusal(run: Run) -> None:
    ref = "minimal breaker decorator raising MiniOpen (reference)"
    decorated = "bounceback @CircuitBreaker decorator"
    mini = MiniBreaker("mini-open", threshold=1, open_seconds=3600)
    mini_fn = mini(down)
    with contextlib.suppress(ConnectionError):
        mini_fn()
    brk = opened_breaker("bench-refuse")
    policy_brk = opened_breaker("bench-refuse-policy")
    py = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
    py_fn = py(down)
    with contextlib.suppress(ConnectionError, pybreaker.CircuitBreakerError):
        py_fn()
    cb_fn = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=3600)(down)
    with contextlib.suppress(ConnectionError):
        cb_fn()

    def no_op() -> None:
        return None

    cases: dict[str, tuple[Callable[[], Any], type[BaseException]]] = {
        ref: (mini_fn, MiniOpen),
        decorated: (brk(no_op), CircuitOpenError),
        "bounceback breaker.call(fn)": (functools.partial(brk.call, no_op), CircuitOpenError),
        "bounceback @Policy(retry + breaker), open past deadline": (
            Policy("bench-refuse-policy", breaker=policy_brk)(no_op),
            CircuitOpenError,
        ),
        "pybreaker decorator": (py_fn, pybreaker.CircuitBreakerError),
        "circuitbreaker decorator": (cb_fn, circuitbreaker.CircuitBreakerError),
    }
    for name, (fn, error) in cases.items():  # each must refuse, not call through
        try:
            fn()
        except error:
            continue
        raise SystemExit(f"{name} did not refuse the call")
    best = best_ns({name: refusal_timer(fn, error) for name, (fn, error) in cases.items()}, run)
    table(
        "3. refusing a call while open, decorated (ns per refused call)",
        rows_from(best, ref, {decorated: 1.5}),
        ref,
        "open refusal",
    )
    kept = kept_by_refusals(brk(no_op), 100_000)
    print(f"  memory kept by bounceback after 100,000 refusals: {kept} bytes")


def kept_by_refusals(fn: Callable[[], Any], n: int) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(n):
        with contextlib.suppress(CircuitOpenError):
            fn()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before


# -- 4. the open-state check ------------------------------------------------------------------------------


class Holder:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = "closed"


def state_check(run: Run) -> None:
    ref = "attribute read + time.monotonic() (reference)"
    opened = "bounceback breaker.state (open)"
    closed = "bounceback breaker.state (closed)"
    py = pybreaker.CircuitBreaker()
    cb = circuitbreaker.CircuitBreaker()
    cases = {
        ref: stmt_timer("o.state; monotonic()", {"o": Holder(), "monotonic": time.monotonic}),
        opened: stmt_timer("b.state", {"b": opened_breaker("bench-state-open")}),
        closed: stmt_timer("b.state", {"b": CircuitBreaker("bench-state-closed")}),
        "pybreaker .current_state": stmt_timer("b.current_state", {"b": py}),
        "circuitbreaker .state": stmt_timer("b.state", {"b": cb}),
    }
    best = best_ns(cases, run)
    table(
        "4. breaker state check (ns per read)",
        rows_from(best, ref, {opened: 2.0, closed: 2.0}),
        ref,
        "state check",
    )


# -- 5. memory and creation -------------------------------------------------------------------------------


def distinct_function(name: str) -> Callable[[int], int]:
    """A new function object with its own name (a decorated function's operation is named after it)."""

    def fn(x: int) -> int:
        return x

    fn.__name__ = fn.__qualname__ = name
    return fn


def kept_per_object(make: Callable[[str], Any], prefix: str, n: int) -> float:
    """Bytes still allocated per object while ``n`` of them live (names made before measuring)."""
    for i in range(3):  # one-time caches (defaults, module state) are not the object's
        make(f"{prefix}-warm-{i}")
    names = [f"{prefix}-{i:05d}" for i in range(n)]
    keep: list[Any] = [None] * n
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, name in enumerate(names):
        keep[i] = make(name)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / n


def time_to_create(make: Callable[[str], Any], prefix: str, n: int, repeat: int) -> float:
    """Best ns to create one object (fresh names every repeat: no cache of an earlier one helps)."""
    best = math.inf
    for r in range(repeat):
        names = [f"{prefix}-t{r}-{i:05d}" for i in range(n)]
        gc.collect()
        gc.disable()
        try:
            started = time.thread_time()
            objs = [make(name) for name in names]
            took = time.thread_time() - started
        finally:
            gc.enable()
        del objs
        best = min(best, took / n * 1e9)
    return best


def memory_and_creation(run: Run) -> None:
    def decorated(name: str) -> Any:
        return bounceback.retry()(distinct_function(name))

    def decorated_tenacity(name: str) -> Any:
        return tenacity.retry(stop=tenacity.stop_after_attempt(5))(distinct_function(name))

    makers: dict[str, Callable[[str], Any]] = {
        "pybreaker.CircuitBreaker (reference)": lambda n: pybreaker.CircuitBreaker(
            fail_max=5, reset_timeout=30, name=n
        ),
        "circuitbreaker.CircuitBreaker": lambda n: circuitbreaker.CircuitBreaker(name=n),
        "bounceback CircuitBreaker(name)": CircuitBreaker,
        "bounceback Policy(name)": Policy,
        "bounceback Policy(name, breaker=CircuitBreaker(name))": lambda n: Policy(
            n, breaker=CircuitBreaker(n)
        ),
        "bounceback @retry() function": decorated,
        "tenacity @retry function": decorated_tenacity,
        "a plain function (for scale)": distinct_function,
    }
    ref = "pybreaker.CircuitBreaker (reference)"
    mem = {
        name: kept_per_object(make, f"mem{i}", run.objects) for i, (name, make) in enumerate(makers.items())
    }
    mem_budget = {"bounceback CircuitBreaker(name)": 1024.0, "bounceback Policy(name)": 1536.0}
    rows = [Row(name, b, "B", b / mem[ref], mem_budget.get(name), absolute=True) for name, b in mem.items()]
    table(f"6a. memory kept per live object (tracemalloc, average of {run.objects:,})", rows, ref, "memory")

    order = list(makers)
    run.rng.shuffle(order)
    create = {
        name: time_to_create(makers[name], f"new{i}", run.objects, max(3, run.repeat // 2))
        for i, name in enumerate(order)
    }
    create_budget = {"bounceback CircuitBreaker(name)": 5000.0, "bounceback Policy(name)": 5000.0}
    rows = [
        Row(name, create[name], "ns", create[name] / create[ref], create_budget.get(name), absolute=True)
        for name in makers
    ]
    table(f"6b. time to create one object (best of batches of {run.objects:,})", rows, ref, "create")


# -- 6. threads -------------------------------------------------------------------------------------------


class Mixed:
    """One thread's dependency: call ``k`` fails once when k % 10 == 0, twice when k % 50 == 25.

    It counts its own attempts and failures (each thread has its own, so these counts are exact).
    """

    __slots__ = ("attempts", "failures", "key", "left")
    __name__ = "mixed"
    __qualname__ = "mixed"

    def __init__(self) -> None:
        self.attempts = self.failures = self.left = 0
        self.key = -1

    def __call__(self, k: int) -> int:
        self.attempts += 1
        if k != self.key:
            self.key = k
            self.left = 2 if k % 50 == 25 else 1 if k % 10 == 0 else 0
        if self.left:
            self.left -= 1
            self.failures += 1
            raise ConnectionResetError("reset")
        return k


@dataclass
class Load:
    seconds: float  # CPU time of the process (all threads)
    wall: float
    deps: list[Mixed]
    succeeded: int
    errors: list[str]


def load(wrap: Callable[[Mixed], Callable[[int], int]], threads: int, calls: int) -> Load:
    deps = [Mixed() for _ in range(threads)]
    fns = [wrap(dep) for dep in deps]
    start = threading.Barrier(threads + 1)
    succeeded = [0] * threads
    errors: list[str] = []

    def worker(index: int) -> None:
        fn = fns[index]
        ok = 0
        start.wait()
        for k in range(1, calls + 1):
            try:
                if fn(k) == k:
                    ok += 1
            except Exception as exc:  # counted, not fatal: the counts then say what went wrong
                errors.append(f"{type(exc).__name__}: {exc}")
        succeeded[index] = ok

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for t in pool:
        t.join()
    seconds, wall = time.process_time() - cpu, time.perf_counter() - started
    return Load(seconds, wall, deps, sum(succeeded), errors)


def threads_load(run: Run) -> None:
    ref = "hand-written 3-try loop (reference)"
    policy_row = "bounceback ONE Policy(retry + breaker)"
    made: list[tuple[str, CircuitBreaker | None]] = []
    counter = [0]

    def one_policy(with_breaker: bool) -> Callable[[Mixed], Callable[[int], int]]:
        # One Policy (and one breaker) per measured round, shared by all the threads of that round. The
        # count window holds every attempt of the round, so the breaker's counts can be checked exactly.
        counter[0] += 1
        name = f"bench-threads-{counter[0]}"
        brk = CircuitBreaker(name, window=1_000_000) if with_breaker else None
        policy = Policy(name, attempts=3, backoff=ZERO, breaker=brk)
        made.append((name, brk))
        return policy

    variants: dict[str, Callable[[], Callable[[Mixed], Callable[[int], int]]]] = {
        ref: lambda: handwritten_retry,
        policy_row: lambda: one_policy(True),
        "bounceback ONE Policy(retry only)": lambda: one_policy(False),
    }
    best = dict.fromkeys(variants, math.inf)
    best_wall = dict.fromkeys(variants, math.inf)
    checks: list[str] = []
    exact = True
    expected_ok = run.threads * run.calls
    order = list(variants)
    switch = sys.getswitchinterval()
    for _ in range(run.thread_repeat):
        run.rng.shuffle(order)
        for name in order:
            made.clear()
            gc.collect()
            result = load(variants[name](), run.threads, run.calls)
            best[name] = min(best[name], result.seconds)
            best_wall[name] = min(best_wall[name], result.wall)
            attempts = sum(d.attempts for d in result.deps)
            failures = sum(d.failures for d in result.deps)
            ok = result.succeeded == expected_ok and not result.errors
            line = f"{name}: {result.succeeded:,} of {expected_ok:,} calls succeeded"
            if result.errors:
                line += f", {len(result.errors)} raised (first: {result.errors[0]})"
            for _, brk in made:
                if brk is None:
                    continue
                m = brk.metrics()
                same = m.calls == attempts and m.failures == failures and m.state == "closed"
                ok = ok and same
                line += (
                    f"; breaker counted {m.calls:,} calls / {m.failures:,} failures, the dependencies "
                    f"{attempts:,} / {failures:,} ({'exact' if same else 'NOT exact'}), state {m.state}"
                )
            exact = exact and ok
            checks.append(line)
    rows = [
        Row(
            name,
            s,
            "s",
            s / best[ref],
            2.0 if name == policy_row else None,
            note=f"wall {best_wall[name]:.3f} s, {best_wall[name] / best_wall[ref]:.2f}x",
        )
        for name, s in best.items()
    ]
    table(
        f"5. {run.threads} threads x {run.calls:,} mixed calls, CPU seconds of the process (1 in 10 fails once, 1 in 50 twice; zero waits;"
        " Policy: attempts=3, default 30 s deadline and retry budget)",
        rows,
        ref,
        "threads",
    )
    print(f"  switch interval {switch * 1000:g} ms; counts in every round (best time shown above):")
    seen: set[str] = set()
    for line in checks:
        if line not in seen:
            seen.add(line)
            print(f"    {line}")
    SUMMARY.append(
        (
            "threads: counts exact (breaker metrics = the dependencies' own counts)",
            Row("counts exact", math.nan, "", None, verdict=exact),
        )
    )


# -- main -------------------------------------------------------------------------------------------------


def summary() -> None:
    print("\nSummary (issue 20, 'Done when'):")
    width = max(len(key) for key, _ in SUMMARY)
    misses = 0
    for key, r in SUMMARY:
        if r.verdict is not None:
            shown, budget = ("exact" if r.ok else "NOT exact"), "exact"
        elif r.absolute:
            shown = f"{r.value:,.0f} {r.unit}"
            budget = f"<= {r.budget:,.0f} {r.unit}"
        else:
            shown = f"{r.ratio:.2f}x"
            budget = f"<= {r.budget:g}x"
        misses += not r.ok
        print(f"  {key:<{width}}  {shown:>10}  {budget:>10}  {'PASS' if r.ok else 'MISS'}")
    print(f"  {len(SUMMARY) - misses} PASS, {misses} MISS")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: short loops, fewer repeats and calls"
    )
    sections = {
        "success": (success_sync, success_async),
        "failure": (one_failure,),
        "refusal": (refusal,),
        "state": (state_check,),
        # Threads before objects: the objects section makes tens of thousands of operations, and each keeps
        # its retry budget for the life of the process (as a program's operations do, so that a policy made
        # per call still shares its operation's budget); the other sections run in a process of normal size.
        "threads": (threads_load,),
        "objects": (memory_and_creation,),
    }
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(sections),
        help="run only this section (repeat the option for more); the summary then lists only those",
    )
    args = parser.parse_args()
    run = Run()
    if args.quick:
        run = Run(target=0.01, repeat=3, objects=300, calls=2_000, thread_repeat=1)
    warnings.simplefilter("ignore")  # peers' deprecation warnings are not ours to judge here
    started = time.perf_counter()
    print(
        f"bounceback {bounceback.__version__}, python {sys.version.split()[0]}, "
        f"{'quick' if args.quick else 'full'} run: loops of ~{run.target * 1000:g} ms of CPU time, "
        f"best of {run.repeat}, rows shuffled per repeat"
    )
    for name, steps in sections.items():
        if not args.only or name in args.only:
            for step in steps:
                step(run)
    summary()
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
