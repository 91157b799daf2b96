"""Windows, the in-memory store, breakers sharing a store, and running on local state when it fails."""

from __future__ import annotations

from collections import deque
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from bounceback import BreakerState, CircuitBreaker, CircuitOpenError, Classification, ErrorKind, StoreError
from bounceback.breakers import MemoryBreakerStore, SharedState, WindowSpec
from bounceback.core._tally import Tally
from bounceback.core.breaker._window import FAILED, SLOW, CountWindow, TimeWindow
from bounceback.events import EventBus, StoreRecovered, StoreUnavailable
from bounceback.testing import FakeClock, RecordingSink

DOWN = Classification(ErrorKind.TRANSIENT, "down")

# -- windows -----------------------------------------------------------------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("one"), st.sampled_from([0, FAILED, SLOW, FAILED | SLOW])),
        st.tuples(st.just("many"), st.integers(0, 25)),
    ),
    max_size=60,
)


@given(size=st.integers(1, 12), ops=steps)
def test_count_window_matches_a_plain_deque(size: int, ops: list[tuple[str, int]]) -> None:
    win = CountWindow(size)
    model: deque[int] = deque(maxlen=size)
    run = 0  # failures in a row at the newest end, whatever the window's size
    for kind, value in ops:
        if kind == "one":
            counts = win.record(0, value)
            model.append(value)
            run = run + 1 if value & FAILED else 0
        else:
            counts = win.record(value, -1)
            model.extend([0] * value)
            run = 0 if value else run
        expected = (len(model), sum(o & FAILED for o in model), sum(1 for o in model if o & SLOW), run)
        assert counts == expected
        assert (win.calls, win.failures, win.slow, win.consecutive) == expected


@given(
    size=st.integers(1, 40),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("one"), st.sampled_from([FAILED, FAILED, FAILED, 0, SLOW, FAILED | SLOW])),
            st.tuples(st.just("many"), st.integers(0, 6)),
        ),
        min_size=100,
        max_size=400,
    ),
    batch=st.integers(0, 5),
)
def test_long_runs_of_failures_match_the_deque(size: int, ops: list[tuple[str, int]], batch: int) -> None:
    # Long enough that failures leave the window one, or many, at a time (a batch of successes before an
    # outcome pushes several out at once), and the list of their positions is cut (more than 32 behind
    # its head) over and over.
    win = CountWindow(size)
    model: deque[int] = deque(maxlen=size)
    for i, (kind, value) in enumerate(ops):
        if kind == "one":
            successes = batch if i % 3 == 0 else 0
            counts = win.record(successes, value)
            model.extend([0] * successes)
            model.append(value)
        else:
            counts = win.record(value, -1)
            model.extend([0] * value)
        assert counts[:3] == (len(model), sum(o & FAILED for o in model), sum(1 for o in model if o & SLOW))


@given(
    size=st.integers(1, 40),
    ops=st.lists(st.tuples(st.integers(0, 90), st.sampled_from([0, FAILED, SLOW, 3])), max_size=80),
)
def test_a_batch_of_successes_then_an_outcome_is_the_same_as_one_at_a_time(
    size: int, ops: list[tuple[int, int]]
) -> None:
    batched, single = CountWindow(size), CountWindow(size)
    for successes, outcome in ops:
        counts = batched.record(successes, outcome)
        for _ in range(successes):
            single.add(0)
        single.add(outcome)
        assert counts == single.counts()


@given(
    seconds=st.sampled_from([1.0, 10.0, 60.0, 250.0]),
    ops=st.lists(st.tuples(st.floats(0, 30), st.sampled_from([0, FAILED, SLOW])), max_size=40),
)
def test_time_window_keeps_what_is_younger_than_its_size(
    seconds: float, ops: list[tuple[float, int]]
) -> None:
    win = TimeWindow(seconds)
    width = seconds / win.buckets
    now = 0.0
    seen: list[tuple[float, int]] = []
    for gap, outcome in ops:
        now += gap
        win.add(outcome, now)
        seen.append((now, outcome))
        # Bucketed: everything younger than size - width is kept, nothing older than size is.
        kept = [o for t, o in seen if t > now - seconds + width]
        maybe = [o for t, o in seen if now - seconds < t <= now - seconds + width]
        assert len(kept) <= win.calls <= len(kept) + len(maybe)


def test_time_window_expires_without_new_outcomes() -> None:
    win = TimeWindow(10.0)
    win.add(FAILED, 1.0)
    win.add_successes(3, 2.0)
    win.expire(5.0)
    assert (win.calls, win.failures) == (4, 1)
    win.expire(1000.0)
    assert (win.calls, win.failures) == (0, 0)


# -- the in-memory store -----------------------------------------------------------------------------


def test_transition_is_a_compare_and_set_on_the_version() -> None:
    store = MemoryBreakerStore()
    opened = SharedState("open", 1, 0.0, 30.0, 1, "trip")
    assert store.transition("k", 0, opened, clear=False) == opened
    late = SharedState("forced_open", 1, 0.0, None, 0, "someone else")
    assert store.transition("k", 0, late, clear=False) == opened  # lost the race: gets the winner
    assert store.load("k") == opened


def test_probe_leases_expire_when_the_holder_dies() -> None:
    store = MemoryBreakerStore()
    store.transition("k", 0, SharedState("half_open", 1, 0.0), clear=False)
    a = store.acquire_probe("k", 1, limit=2, now=0.0, lease=5.0)
    b = store.acquire_probe("k", 1, limit=2, now=0.0, lease=5.0)
    assert a and b and a != b
    assert store.acquire_probe("k", 1, limit=2, now=4.9, lease=5.0) is None
    assert store.probes("k", 4.9) == 2
    c = store.acquire_probe("k", 1, limit=2, now=5.0, lease=5.0)  # both holders died: leases ran out
    assert c is not None
    assert store.finish_probe("k", 1, c, success=True) == 1
    assert store.finish_probe("k", 0, c, success=True) == -1  # a stale version
    assert store.acquire_probe("k", 0, limit=2, now=5.0, lease=5.0) is None


def test_a_new_window_shape_starts_empty() -> None:
    store = MemoryBreakerStore()
    store.record("k", WindowSpec("count", 10), 5, FAILED, now=0.0)
    counts, _ = store.record("k", WindowSpec("time", 60), 0, FAILED, now=1.0)
    assert (counts.calls, counts.failures) == (1, 1)


# -- breakers sharing a store (as processes share a database) ------------------------------------------


def pair(clock: FakeClock, bus: EventBus, **limits: Any) -> tuple[CircuitBreaker, CircuitBreaker]:
    store = MemoryBreakerStore(shared=True, name="shared-memory")
    kw: dict[str, Any] = {"window": 4, "min_calls": 4, "open_seconds": 10, "half_open_calls": 2, **limits}
    a = CircuitBreaker("fleet", store=store, clock=clock, bus=bus, sync_seconds=1, **kw)
    b = CircuitBreaker("fleet", store=store, clock=clock, bus=bus, sync_seconds=1, **kw)
    return a, b


def test_shared_breakers_add_up_their_outcomes_and_open_together() -> None:
    clock, bus = FakeClock(), EventBus()
    a, b = pair(clock, bus)
    assert not a.fast_path  # every success must reach the shared window
    a.release(a.acquire(), DOWN)
    b.release(b.acquire(), DOWN)
    a.release(a.acquire(), None)
    b.release(b.acquire(), DOWN)  # 3 of 4 failed, counted across both
    assert b.state is BreakerState.OPEN
    assert a.metrics().failures == 3  # one window for both
    left = b.metrics().retry_after
    assert left is not None and 5.0 <= left <= 10.0  # the open time, jittered once for the whole store
    clock.advance(1)  # a's next sync sees b's transition
    with pytest.raises(CircuitOpenError) as info:
        a.acquire()
    assert info.value.retry_after == pytest.approx(left - 1)  # the same open-until: one probe round


def test_shared_half_open_admits_half_open_calls_across_breakers() -> None:
    clock, bus = FakeClock(), EventBus()
    a, b = pair(clock, bus)
    a.force_open()
    a.force_close()
    for _ in range(4):
        a.release(a.acquire(), DOWN)
    clock.advance(10)
    pa = a.acquire()  # a goes half-open and takes one probe permit
    pb = b.acquire()  # b syncs, adopts half-open and takes the other
    assert pa is not None and pb is not None
    refused = 0
    for brk in (a, b, a, b):
        try:
            brk.acquire()
        except CircuitOpenError:
            refused += 1
    assert refused == 4
    a.release(pa, None)
    b.release(pb, None)  # the second success, counted in the store, closes it
    assert b.state is BreakerState.CLOSED
    clock.advance(1)
    a.release(a.acquire(), None)  # a's next call syncs and finds it closed
    assert a.state is BreakerState.CLOSED


def test_manual_action_in_one_is_seen_by_the_other_within_sync_seconds() -> None:
    clock, bus = FakeClock(), EventBus()
    a, b = pair(clock, bus)
    a.force_open("dashboard: maintenance")
    clock.advance(1)
    with pytest.raises(CircuitOpenError) as info:
        b.acquire()
    assert info.value.state == "forced_open"
    b.force_close()
    clock.advance(1)
    assert a.acquire() is not None and a.state_name == "closed"


# -- a store that counts a breaker's successes itself (the optional success_counter port) ------------------


class CountingStore(MemoryBreakerStore):
    """The in-memory store with the optional ``success_counter`` port: successes counted by the breaker on
    its fast path are bumps of a tally here, added to the window before the key's next outcome."""

    def __init__(self) -> None:
        super().__init__(shared=True, name="counting")
        self.tallies: dict[str, Tally] = {}

    def success_counter(self, key: str, spec: WindowSpec) -> Any:
        return self.tallies.setdefault(key, Tally()).bump

    def record(self, key: str, spec: WindowSpec, successes: int, outcome: int, now: float) -> Any:
        tally = self.tallies.get(key)
        return super().record(key, spec, successes + (tally.take() if tally else 0), outcome, now)


def test_a_store_that_counts_successes_puts_a_shared_breaker_on_the_fast_path() -> None:
    clock, bus = FakeClock(), EventBus()
    store = CountingStore()
    kw: dict[str, Any] = {"window": 10, "min_calls": 4, "sync_seconds": 1, "clock": clock, "bus": bus}
    a = CircuitBreaker("counted", store=store, **kw)
    b = CircuitBreaker("counted", store=store, **kw)
    assert a.fast_path  # a shared store, and yet a success needs no store call
    for _ in range(3):
        assert a.call(len, "ok") == 2  # each a bump of the store's tally: no record
    a.release(None, DOWN)  # the failure lands after the three successes, in order
    counts = store.counts("counted", WindowSpec("count", 10), 0.0)
    assert (counts.calls, counts.failures, counts.consecutive_failures) == (4, 1, 1)
    b.force_open("from the other process")
    a.call(len, "ok")  # within sync_seconds: a does not look at the store yet
    clock.advance(1)
    a.call(len, "ok")  # the success's count finds the sync due: a adopts the state written by b
    assert a.state is BreakerState.FORCED_OPEN and not a.fast_path
    with pytest.raises(CircuitOpenError):
        a.call(len, "refused")


# -- the store fails ---------------------------------------------------------------------------------


class FlakyStore(MemoryBreakerStore):
    """The real in-memory store with a switch that makes it unreachable (a stand-in for a dead server)."""

    def __init__(self) -> None:
        super().__init__(shared=True, name="flaky://store")
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreError(self.name, "reach the store", "connection refused")

    def load(self, key: str) -> Any:
        self._check()
        return super().load(key)

    def record(self, *args: Any) -> Any:
        self._check()
        return super().record(*args)

    def counts(self, *args: Any) -> Any:
        self._check()
        return super().counts(*args)

    def transition(self, *args: Any) -> Any:
        self._check()
        return super().transition(*args)

    def acquire_probe(self, *args: Any) -> Any:
        self._check()
        return super().acquire_probe(*args)

    def finish_probe(self, *args: Any) -> Any:
        self._check()
        return super().finish_probe(*args)


def test_unreachable_store_runs_on_local_state_and_recovers() -> None:
    clock, bus = FakeClock(), EventBus()
    store = FlakyStore()
    brk = CircuitBreaker(
        "fallback", store=store, window=3, min_calls=3, store_retry_seconds=5, clock=clock, bus=bus
    )
    with RecordingSink(bus) as sink:
        store.down = True
        brk.release(brk.acquire(), None)  # no exception reaches the caller
        assert not brk.metrics().store_available
        brk.release(brk.acquire(), DOWN)
        brk.release(brk.acquire(), DOWN)
        assert brk.state is BreakerState.OPEN  # the local window still trips
        assert len(sink.of(StoreUnavailable)) == 1
        store.down = False
        clock.advance(5)
        brk.metrics()
        brk.force_close()
        brk.release(brk.acquire(), None)
        assert brk.metrics().store_available
    assert len(sink.of(StoreRecovered)) == 1
    assert sink.of(StoreUnavailable)[0].store == "flaky://store"
    assert store.load("fallback") is not None and store.load("fallback").state == "closed"  # type: ignore[union-attr]


def test_fail_closed_refuses_calls_while_the_store_is_away() -> None:
    clock, bus = FakeClock(), EventBus()
    store = FlakyStore()
    brk = CircuitBreaker(
        "strict", store=store, store_unavailable="fail-closed", store_retry_seconds=5, clock=clock, bus=bus
    )
    brk.release(brk.acquire(), None)
    store.down = True
    brk.release(brk.acquire(), DOWN)  # this record finds the store gone
    with pytest.raises(CircuitOpenError) as info:
        brk.acquire()
    assert info.value.state == "store_unavailable" and info.value.retry_after == 5.0
    store.down = False
    clock.advance(5)
    brk.release(brk.acquire(), None)
    assert brk.metrics().store_available
