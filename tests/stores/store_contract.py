"""The breaker-store contract, checked against the in-memory reference, for every shared store.

A random sequence of store operations runs on the store under test and on a ``MemoryBreakerStore``; every
answer must be the same. The memory store is the port's reference implementation, so a shared store that
passes behaves like it, only shared.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from bounceback.core.breaker._store import (
    NO_OUTCOME,
    BreakerStore,
    MemoryBreakerStore,
    SharedState,
    WindowSpec,
)
from bounceback.core.retry._budget import BudgetLedger, BudgetRule, LocalLedger
from bounceback.testing import FakeClock

SPECS = [WindowSpec("count", 5), WindowSpec("count", 3), WindowSpec("time", 10.0), WindowSpec("time", 2.5)]
STATES = ["closed", "open", "half_open", "forced_open", "disabled"]
WALL0 = 1_800_000_000.0
INITIAL = SharedState("closed", 0, 0.0)

# Time steps: mostly within a bucket or a few, now and then past a whole window.
_dt = st.sampled_from([0.0, 0.0, 0.0, 0.1, 0.3, 0.9, 1.6, 1.6, 2.5, 2.5, 4.0, 6.0, 12.0])
# Mostly the example's own window shape (so windows fill and age), now and then a reconfiguration.
_spec = st.sampled_from([0] * 8 + [1, 2, 3])
_record = st.tuples(
    st.just("record"),
    _spec,
    st.sampled_from([0, 0, 0, 1, 2, 4, 7]),
    st.sampled_from([NO_OUTCOME, 0, 0, 1, 1, 2, 3]),
    _dt,
)
OPS = st.lists(
    st.one_of(
        # Records weigh most: windows must fill, wrap and age for the interesting cases to happen.
        _record,
        _record,
        _record,
        _record,
        st.tuples(st.just("counts"), _spec, _dt),
        st.tuples(st.just("transition"), st.sampled_from(STATES), st.booleans(), st.booleans()),
        st.tuples(st.just("acquire"), st.integers(1, 3), st.sampled_from([0.5, 5.0])),
        st.tuples(st.just("finish"), st.integers(0, 20), st.sampled_from([True, False, None])),
        st.tuples(st.just("probes"), _dt),
        st.tuples(
            st.just("load"),
        ),
    ),
    min_size=15,  # windows only fill, wrap and age in long runs; hypothesis prefers short lists
    max_size=80,
)
"""Store operations: record / counts / transition / acquire / finish / probes / load, with time steps."""

_small_dt = st.sampled_from([0.0, 0.0, 0.1, 0.3, 0.9, 1.6, 2.5, 4.0])
WINDOW_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("record"), st.just(0), st.sampled_from([0, 0, 1, 4, 7]), st.sampled_from([NO_OUTCOME, 0, 1, 2, 3]),
            _small_dt,
        ),
        st.tuples(st.just("counts"), st.just(0), _small_dt),
    ),
    min_size=10,
    max_size=80,
)  # fmt: skip
"""Only outcomes in one window shape, in small time steps: windows fill, wrap and age bucket by bucket."""

EXAMPLES: list[tuple[int, list[tuple[Any, ...]]]] = [
    # A time window whose oldest bucket ages out while newer ones stay.
    (2, [("record", 0, 0, 1, 0.0), ("record", 0, 0, 0, 5.0), ("record", 0, 0, 0, 6.0), ("counts", 0, 4.0)]),
    # A count window that wraps, with a batch of successes across the end of the ring.
    (0, [("record", 0, 0, 3, 0.0)] * 4 + [("record", 0, 4, 1, 0.0), ("record", 0, 7, 2, 0.0)]),
    # Every permit taken, one lease runs out, a new holder gets it.
    (0, [("transition", "half_open", False, False), ("acquire", 2, 0.5), ("acquire", 2, 5.0),
         ("acquire", 2, 5.0), ("probes", 0.9), ("acquire", 2, 5.0), ("finish", 0, True), ("probes", 0.0)]),
]  # fmt: skip
"""Hand-picked sequences every run checks, on top of the generated ones."""


def run_contract(store: BreakerStore, base: int, ops: list[tuple[Any, ...]], key: str) -> None:
    """Apply ``ops`` to ``store`` and to the reference; fail at the first answer that differs.

    Window shapes are ``SPECS[(base + i) % len(SPECS)]`` for the ``i`` an operation carries.
    """
    ref = MemoryBreakerStore(shared=True)
    now = WALL0
    held: list[tuple[int, int]] = []  # (version, token) of permits handed out and not finished

    def check(step: int, op: tuple[Any, ...], got: Any, want: Any) -> None:
        assert got == want, f"step {step} {op}: store said {got!r}, the reference {want!r}"

    for step, op in enumerate(ops):
        kind = op[0]
        if kind == "record":
            _, spec_i, successes, outcome, dt = op
            now += dt
            spec = SPECS[(base + spec_i) % len(SPECS)]
            check(
                step,
                op,
                store.record(key, spec, successes, outcome, now),
                ref.record(key, spec, successes, outcome, now),
            )
        elif kind == "counts":
            _, spec_i, dt = op
            now += dt
            spec = SPECS[(base + spec_i) % len(SPECS)]
            check(step, op, store.counts(key, spec, now), ref.counts(key, spec, now))
        elif kind == "transition":
            _, state, clear, stale = op
            current = ref.load(key)
            version = current.version if current is not None else 0
            expected = version - 1 if stale and version > 0 else version
            until = now + 7.25 if state == "open" else None
            new = SharedState(state, expected + 1, now, until, step % 4, f"step {step}")
            check(
                step,
                op,
                store.transition(key, expected, new, clear),
                ref.transition(key, expected, new, clear),
            )
        elif kind == "acquire":
            _, limit, lease = op
            current = ref.load(key)
            version = current.version if current is not None else 0
            got = store.acquire_probe(key, version, limit, now, lease)
            check(step, op, got, ref.acquire_probe(key, version, limit, now, lease))
            if got is not None:
                held.append((version, got))
        elif kind == "finish":
            _, which, success = op
            if not held:
                continue
            version, token = held.pop(which % len(held))
            check(
                step,
                op,
                store.finish_probe(key, version, token, success),
                ref.finish_probe(key, version, token, success),
            )
        elif kind == "probes":
            now += op[1]
            check(step, op, store.probes(key, now), ref.probes(key, now))
        else:
            # The reference creates an entry when merely read (``counts``); a shared store does not write
            # on a read, so "nothing stored" and "the initial state" are the same answer here.
            check(step, op, store.load(key) or INITIAL, ref.load(key) or INITIAL)


BUDGET_OPS = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 3.0, 11.0]),  # time step (exact in binary: see below)
        st.sampled_from([0, 0, 1, 3, 10]),  # calls reported
        st.sampled_from([0.0, 0.0, 0.5, 2.0, 30.0]),  # span they were made over
        st.booleans(),  # spend a retry
    ),
    min_size=1,
    max_size=40,
)


def run_budget_contract(make: Any, ops: list[tuple[float, int, float, bool]], key: str) -> None:
    """Settle ``ops`` on a ledger built by ``make(clock)`` and on a LocalLedger; the readings must agree.

    The shared ledger reads ``clock.wall()``, the local one the ``now`` it is given; the fake clock's wall
    start is a whole number of slices, so both see the same slice boundaries; time steps are exact binary
    fractions, so ``WALL0 + t`` never rounds across a boundary that ``t`` alone does not cross.
    """
    clock = FakeClock(start=0.0, wall_start=WALL0)
    ledger: BudgetLedger = make(clock)
    ref = LocalLedger()
    rule = BudgetRule(ratio=0.5, min_per_second=0.3, window=10.0)
    for step, (dt, calls, span, spend) in enumerate(ops):
        clock.advance(dt)
        got = ledger.settle(key, rule, clock.monotonic(), calls, span, spend)
        want = ref.settle(key, rule, clock.monotonic(), calls, span, spend)
        where = f"step {step} {(dt, calls, span, spend)}"
        assert got.granted == want.granted, f"{where}: granted {got} vs reference {want}"
        for field in ("calls", "retries", "allowance"):
            a, b = getattr(got, field), getattr(want, field)
            assert abs(a - b) < 1e-6, f"{where}: {field} {a} vs reference {b}"
