"""Worker processes for the shared-store tests, and the virtual clock they share with the test.

The workers are real processes (``multiprocessing`` with ``spawn``) that each build their own breaker on
the same SQLite file or Redis server. Time is virtual and shared: :class:`SharedClock` reads a double in
shared memory that only the test moves, so open times, leases and store retries pass when the test says,
without anyone sleeping, while the processes really run at the same time.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from bounceback import CircuitBreaker, CircuitOpenError
from bounceback.core._events import BreakerOpened, Event, StoreRecovered, StoreUnavailable
from bounceback.core._time import CancelToken
from bounceback.core.breaker._store import BreakerStore, SharedState, WindowSpec
from bounceback.core.breaker._window import WindowCounts
from bounceback.core.retry._budget import RetryBudget
from bounceback.events import EventBus
from bounceback.stores import RedisBreakerStore, RedisBudgetLedger, SqliteBreakerStore, SqliteBudgetLedger

WALL0 = 1_800_000_000.0
N_WORKERS = 8
HALF_OPEN_CALLS = 3
BARRIER_TIMEOUT = 60.0


class SharedClock:
    """Virtual time in shared memory (a ``multiprocessing`` RawValue of type ``'d'``); the test moves it."""

    def __init__(self, cell: Any) -> None:
        self.cell = cell

    def monotonic(self) -> float:
        value: float = self.cell.value
        return value

    def wall(self) -> float:
        return WALL0 + self.monotonic()

    def advance(self, seconds: float) -> None:
        self.cell.value += seconds

    def sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        """Nobody sleeps on this clock: only the test moves time."""

    async def async_sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        """As :meth:`sleep`."""


def make_store(kind: str, target: str) -> BreakerStore:
    if kind == "sqlite":
        return SqliteBreakerStore(target)
    return RedisBreakerStore(target, timeout=0.5)


class CountingStore:
    """Passes everything to a real store and counts the outcomes this process recorded."""

    def __init__(self, inner: BreakerStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.shared = inner.shared
        self.calls = 0
        self.failures = 0

    def load(self, key: str) -> SharedState | None:
        return self.inner.load(key)

    def record(
        self, key: str, spec: WindowSpec, successes: int, outcome: int, now: float
    ) -> tuple[WindowCounts, SharedState | None]:
        result = self.inner.record(key, spec, successes, outcome, now)
        # Counted after the store answered: an outcome that raised was not recorded there.
        self.calls += successes + (outcome >= 0)
        self.failures += outcome >= 0 and outcome & 1
        return result

    def counts(self, key: str, spec: WindowSpec, now: float) -> WindowCounts:
        return self.inner.counts(key, spec, now)

    def transition(self, key: str, expected: int, new: SharedState, clear: bool) -> SharedState:
        return self.inner.transition(key, expected, new, clear)

    def acquire_probe(self, key: str, version: int, limit: int, now: float, lease: float) -> int | None:
        return self.inner.acquire_probe(key, version, limit, now, lease)

    def finish_probe(self, key: str, version: int, token: int, success: bool | None) -> int:
        return self.inner.finish_probe(key, version, token, success)

    def probes(self, key: str, now: float) -> int:
        return self.inner.probes(key, now)

    def success_counter(self, key: str, spec: WindowSpec) -> Callable[[], object] | None:
        """The inner store's counter of fast-path successes (a batched store's), counted here too."""
        offer = getattr(self.inner, "success_counter", None)
        if offer is None:
            return None
        bump = offer(key, spec)

        def counted() -> object:
            self.calls += 1  # a worker calls from one thread
            return bump()

        return counted

    def on_state_change(self, key: str, notify: Callable[[SharedState], object]) -> None:
        """Pass the breaker's listener on (a batched store tells it of pushed changes)."""
        offer = getattr(self.inner, "on_state_change", None)
        if offer is not None:
            offer(key, notify)


def hammer_breaker(store: BreakerStore, clock: SharedClock, bus: EventBus | None = None) -> CircuitBreaker:
    """The breaker every process of the hammer test builds (the same name and limits everywhere)."""
    return CircuitBreaker(
        "hammer",
        store=store,
        clock=clock,
        bus=bus or EventBus(),
        timers=False,
        window=100_000,
        min_calls=20,
        failure_rate=50,
        open_seconds=30,
        half_open_calls=HALF_OPEN_CALLS,
        probe_lease_seconds=60,
        sync_seconds=1,
    )


def _fail() -> None:
    raise ConnectionError("dependency down")


def hammer(
    kind: str, target: str, cell: Any, n_ok: int, barrier: Any, ran: Any, release: Any, out: Any
) -> None:
    """Phase 1: ``n_ok`` successes. Phase 2: failures until refused. Phase 3: one call each, at once."""
    try:
        clock = SharedClock(cell)
        bus = EventBus()
        opened: list[BreakerOpened] = []
        bus.subscribe(lambda e: opened.append(e) if isinstance(e, BreakerOpened) else None)
        store = CountingStore(make_store(kind, target))
        brk = hammer_breaker(store, clock, bus)
        for _ in range(n_ok):
            brk.call(lambda: None)
        barrier.wait(BARRIER_TIMEOUT)  # the test reads the window: every success must be in it
        barrier.wait(BARRIER_TIMEOUT)
        failures_run = 0
        for _ in range(20_000):
            try:
                brk.call(_fail)
            except ConnectionError:
                failures_run += 1
            except CircuitOpenError:
                break
        phase2 = (store.calls, store.failures)
        retry_at = brk.metrics().retry_at  # when this process will let its first probe through
        barrier.wait(BARRIER_TIMEOUT)  # the test checks the open state, then moves time past the open time
        barrier.wait(BARRIER_TIMEOUT)

        def probe() -> str:
            with ran.get_lock():
                ran.value += 1
            release.wait(BARRIER_TIMEOUT)  # stay in flight until every process has tried
            return "probe"

        try:
            outcome = brk.call(probe)
        except CircuitOpenError as exc:
            outcome = f"rejected:{exc.state}"
            with ran.get_lock():
                ran.value += 1000  # thousands count the rejected, units the probes that ran
        barrier.wait(BARRIER_TIMEOUT)  # the test checks the breaker closed
        own_opens = sum(not e.reason.startswith("changed by another breaker") for e in opened)
        out.put(
            {
                "phase2": phase2,
                "failures_run": failures_run,
                "outcome": outcome,
                "own_opens": own_opens,
                "retry_at": retry_at,
            }
        )
    except BaseException:
        out.put({"error": traceback.format_exc()})
        barrier.abort()


def lease_breaker(store: BreakerStore, clock: SharedClock) -> CircuitBreaker:
    """A breaker that opens on one failure and lets one probe through, whose permit lasts 5 s."""
    return CircuitBreaker(
        "lease",
        store=store,
        clock=clock,
        bus=EventBus(),
        timers=False,
        consecutive_failures=1,
        open_seconds=10,
        half_open_calls=1,
        probe_lease_seconds=5,
        sync_seconds=1,
    )


def hold_probe(kind: str, target: str, cell: Any, holding: Any) -> None:
    """Take the one probe permit and stay in the call until killed."""
    brk = lease_breaker(make_store(kind, target), SharedClock(cell))

    def probe() -> None:
        holding.set()
        threading.Event().wait(120)  # the test SIGKILLs this process here

    brk.call(probe)


def steady(
    kind: str,
    target: str,
    cell: Any,
    index: int,
    calls: Any,
    unavailable: Any,
    recovered: Any,
    stop: Any,
    out: Any,
) -> None:
    """Call a mostly healthy dependency until a person forces the shared breaker open (or ``stop``)."""
    clock = SharedClock(cell)
    bus = EventBus()

    def count(event: Event) -> None:
        if isinstance(event, StoreUnavailable):
            with unavailable.get_lock():
                unavailable.value += 1
        elif isinstance(event, StoreRecovered):
            with recovered.get_lock():
                recovered.value += 1

    bus.subscribe(count)
    report: dict[str, Any] = {"index": index, "unexpected": [], "user_errors": 0, "forced": False}
    try:
        brk = CircuitBreaker(
            "steady", store=make_store(kind, target), clock=clock, bus=bus, timers=False,
            store_retry_seconds=5, sync_seconds=1,
        )  # fmt: skip

        def work(n: int) -> int:
            if n % 7 == 3:
                raise ValueError(f"bad input {n}")  # the user's own error: it must reach the caller as is
            return n

        for n in range(1_000_000):
            if stop.is_set():
                break
            try:
                brk.call(work, n)
            except ValueError:
                report["user_errors"] += 1
            except CircuitOpenError as exc:
                if exc.state != "forced_open":
                    raise
                report["forced"] = True
                break
            calls[index] += 1
        metrics = brk.metrics()
        report["state"] = metrics.state
        report["store_available"] = metrics.store_available
    except BaseException:
        report["unexpected"].append(traceback.format_exc())
    out.put(report)


def spend_budget(kind: str, target: str, cell: Any, tries: int, barrier: Any, out: Any) -> None:
    """Try ``tries`` retries from the shared budget ``fleet``; report how many were granted."""
    try:
        clock = SharedClock(cell)
        ledger = (
            SqliteBudgetLedger(target, clock=clock)
            if kind == "sqlite"
            else RedisBudgetLedger(target, clock=clock)
        )
        budget = RetryBudget(0.0, min_per_second=1.0, window=10.0, name="fleet", clock=clock, ledger=ledger)
        barrier.wait(BARRIER_TIMEOUT)
        out.put(sum(budget.try_spend("op") for _ in range(tries)))
    except BaseException:
        out.put(traceback.format_exc())
