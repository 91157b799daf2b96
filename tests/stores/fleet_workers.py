"""Worker processes of the fleet test: many processes on one batched shared breaker, flush rounds driven by the test.

Each worker builds a :class:`~bounceback.core.breaker._batched.BatchedBreakerStore` whose flusher thread
waits for the test's *tick* (a shared integer) instead of a timer: one tick is one flush interval, the same
for every process, so "the fleet opens within two flush intervals" is counted in ticks, not measured in
seconds. Time is the shared virtual clock of :mod:`tests.stores.shared_workers`.
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from bounceback import CircuitBreaker, CircuitOpenError
from bounceback.core._events import BreakerOpened
from bounceback.core.breaker._batched import BatchedBreakerStore
from bounceback.core.breaker._store import SharedState
from bounceback.core.breaker._window import WindowCounts
from bounceback.events import EventBus
from tests.stores import shared_workers as w

FULL = os.environ.get("BOUNCEBACK_SOAK", "").strip().lower() == "full"
"""``BOUNCEBACK_SOAK=full``: the issue's size, 32 processes x 20,000 successes (CI: 8 x 2,000)."""
FLUSH_SECONDS = 0.05
# A window that holds every call of the test, so the count must come out exact: a count window of a million
# calls in CI; at the full size (over a million calls) a time window of an hour (virtual time barely moves).
WINDOW_TYPE = "time" if FULL else "count"
WINDOW = 3600 if FULL else 1_000_000
MIN_CALLS = 100
PER_ROUND = 500
"""Failing calls a process makes per flush interval in phase 2."""
HALF_OPEN_CALLS = 3


def fleet_breaker(store: Any, clock: w.SharedClock, bus: EventBus) -> CircuitBreaker:
    """The breaker every process builds: a count window that holds every call of the test."""
    return CircuitBreaker(
        "fleet", store=store, clock=clock, bus=bus, timers=False, window_type=WINDOW_TYPE, window=WINDOW, min_calls=MIN_CALLS,
        failure_rate=50, open_seconds=30, half_open_calls=HALF_OPEN_CALLS, probe_lease_seconds=60,
        sync_seconds=1000,  # the shared state arrives with the flushes, not by the breaker's own polling
    )  # fmt: skip


def _fail() -> None:
    raise ConnectionError("dependency down")


def fleet_worker(
    kind: str, target: str, cell: Any, tick: Any, rounds: Any, index: int, n_ok: int, shared: Any, out: Any
) -> None:
    """Phase 1: ``n_ok`` successes. Phase 2: failures until refused. Phase 3: one call each, at once.

    ``shared``: ``phase`` (set by the test), ``ready`` / ``seen_open`` (per worker), ``ran`` / ``release``.
    """
    report: dict[str, Any] = {"index": index}
    try:
        clock = w.SharedClock(cell)
        store_box: list[BatchedBreakerStore] = []
        last = [0]

        def wait(_seconds: float) -> None:
            # One flush round per tick of the test; report the round just finished.
            with rounds.get_lock():
                rounds.value += 1
            while tick.value <= last[0] and not store_box[0].closed:
                time.sleep(0.0005)  # waiting on the test process, not on backoff
            last[0] = tick.value

        def flushed(key: str, counts: WindowCounts, state: SharedState | None) -> None:
            shared["pending"][index] = store_box[0].pending(key)
            if state is not None and state.state != "closed" and shared["seen_open"][index] < 0:
                shared["seen_open"][index] = last[0]  # the round whose reply brought the open state

        store = BatchedBreakerStore(
            w.make_store(kind, target), flush_seconds=FLUSH_SECONDS, flush_count=10**9, staleness=1000.0,
            monotonic=clock.monotonic, wait=wait, on_flush=flushed,
        )  # fmt: skip
        store_box.append(store)
        counting = w.CountingStore(store)
        bus = EventBus()
        own_opens = []

        def opened(event: Any) -> None:
            if not isinstance(event, BreakerOpened):
                return
            if not event.reason.startswith("changed by another breaker"):
                own_opens.append(event)
            if shared["seen_open"][index] < 0:
                # The opener knows at once, and so does a process whose own trip lost the race to it.
                shared["seen_open"][index] = last[0]

        bus.subscribe(opened)
        brk = fleet_breaker(counting, clock, bus)
        for _ in range(n_ok):
            brk.call(lambda: None)
        shared["ready"][index] = 1
        while shared["phase"].value < 2:
            time.sleep(0.001)
        failures_run = 0
        refused = ""
        # Calls take time: at most PER_ROUND of them per flush interval, so the failures reach the store
        # round by round, as they would in real time (a tight loop would outrun the test's rounds).
        made, seen_tick = 0, tick.value
        for _ in range(200_000):
            if made >= PER_ROUND:
                while tick.value == seen_tick:
                    time.sleep(0.0005)  # waiting on the test process, not on backoff
                made, seen_tick = 0, tick.value
            made += 1
            try:
                brk.call(_fail)
            except ConnectionError:
                failures_run += 1
            except CircuitOpenError as exc:
                refused = exc.state
                break
        report["refused"] = refused
        report["own_opens"] = len(own_opens)
        report["failures_run"] = failures_run
        report["phase2"] = (counting.calls, counting.failures)
        shared["ready"][index] = 2
        while shared["phase"].value < 3:
            time.sleep(0.001)
        ran, release = shared["ran"], shared["release"]

        def probe() -> str:
            with ran.get_lock():
                ran.value += 1
            release.wait(w.BARRIER_TIMEOUT)  # stay in flight until every process has tried
            return "probe"

        try:
            report["outcome"] = brk.call(probe)
        except CircuitOpenError as exc:
            report["outcome"] = f"rejected:{exc.state}"
            with ran.get_lock():
                ran.value += 1000
        store.close()  # flushes what is left
        report["flushes"] = store.flushes
        report["failed_flushes"] = store.failed_flushes
    except BaseException:
        report["error"] = traceback.format_exc()
    out.put(report)
