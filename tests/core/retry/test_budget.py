"""RetryBudget: retries limited to a ratio of recent calls plus a floor, over a sliding window."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bounceback.core.retry._budget import BudgetReading, BudgetRule, LocalLedger, RetryBudget
from bounceback.errors import ConfigError
from bounceback.testing import FakeClock


def spend_all(budget: RetryBudget, limit: int = 10_000) -> int:
    granted = 0
    while granted < limit and budget.try_spend("op"):
        granted += 1
    return granted


def test_retries_are_a_ratio_of_calls_plus_the_floor() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.1, min_per_second=0.5, window=10, clock=clock)
    for _ in range(200):
        budget.record_call("op")
    # 10% of 200 calls, plus 0.5/s over 10 s.
    assert spend_all(budget) == 25
    reading = budget.reading()
    assert reading == BudgetReading(False, 200.0, 25.0, 25.0)
    assert reading.available == 0


def test_floor_alone_allows_min_per_second_times_window() -> None:
    budget = RetryBudget(0.5, min_per_second=2, window=5, clock=FakeClock())
    assert spend_all(budget) == 10


def test_zero_ratio_and_floor_turns_retries_off() -> None:
    budget = RetryBudget(0, min_per_second=0, clock=FakeClock())
    for _ in range(1000):
        budget.record_call()
    assert not budget.try_spend("op")


def test_counts_leave_the_window_and_the_budget_refills() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.5, min_per_second=0, window=10, clock=clock)
    for _ in range(10):
        budget.record_call("op")
    assert spend_all(budget) == 5
    clock.advance(5)
    assert not budget.try_spend("op")  # calls and retries are still in the window
    clock.advance(5.5)
    assert budget.reading().calls == 0
    assert not budget.try_spend("op")  # no calls: no ratio left and no floor
    for _ in range(4):
        budget.record_call("op")
    assert spend_all(budget) == 2


def test_spent_retries_count_until_they_leave_the_window() -> None:
    # A retry waiting in backoff was spent when it was scheduled: it keeps counting for the whole window.
    clock = FakeClock()
    budget = RetryBudget(0.0, min_per_second=0.1, window=10, clock=clock)
    assert budget.try_spend("op")
    clock.advance(9)
    assert not budget.try_spend("op")
    clock.advance(1.5)
    assert budget.try_spend("op")


def test_calls_reported_late_are_spread_over_when_they_happened() -> None:
    # 100 calls made evenly over 100 s and handed over at once: only the last window's share counts.
    clock = FakeClock()
    budget = RetryBudget(1.0, min_per_second=0, window=10, clock=clock)
    for _ in range(100):
        budget.count_call()
    clock.advance(100)
    assert budget.reading().calls == pytest.approx(10, abs=1.01)


def test_a_ledger_holds_separate_pools_per_key() -> None:
    ledger = LocalLedger(slices=4)
    clock = FakeClock()
    a = RetryBudget(1.0, min_per_second=0, name="a", clock=clock, ledger=ledger)
    b = RetryBudget(1.0, min_per_second=0, name="b", clock=clock, ledger=ledger)
    for _ in range(3):
        a.record_call()
    assert spend_all(a) == 3
    assert spend_all(b) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ratio": -0.1}, "ratio"),
        ({"ratio": math.nan}, "ratio"),
        ({"ratio": True}, "ratio"),
        ({"min_per_second": -1}, "min_per_second"),
        ({"min_per_second": math.inf}, "min_per_second"),
        ({"window": 0}, "window"),
        ({"window": "soon"}, "window"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetryBudget(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert repr(kwargs[next(iter(kwargs))])[:3] in str(info.value)


def test_window_accepts_durations_and_ledger_checks_slices() -> None:
    assert RetryBudget(window="2m").rule.window == 120.0
    with pytest.raises(ConfigError) as info:
        LocalLedger(slices=0)
    assert info.value.field == "slices"
    assert "RetryBudget('retry-budget', ratio=0.2, min_per_second=10, window=10)" in repr(RetryBudget())


def test_rule_floor_and_allowance() -> None:
    rule = BudgetRule(ratio=0.25, min_per_second=3, window=2)
    assert rule.floor == 6
    assert rule.allowance(40) == 16


# Each step: advance time (ms), then make some calls, then ask for some retries.
steps = st.lists(
    st.tuples(st.integers(0, 4000), st.integers(0, 6), st.integers(0, 4)), min_size=1, max_size=60
)


@settings(max_examples=150, deadline=None)
@given(
    steps=steps,
    ratio=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    floor=st.sampled_from([0.0, 0.2, 1.0]),
    slices=st.integers(1, 12),
)
def test_never_more_retries_than_the_rule_allows(
    steps: list[tuple[int, int, int]], ratio: float, floor: float, slices: int
) -> None:
    window = 10.0
    width = window / slices
    clock = FakeClock()
    budget = RetryBudget(ratio, min_per_second=floor, window=window, clock=clock, ledger=LocalLedger(slices))
    calls: list[float] = []
    granted: list[float] = []
    for advance_ms, n_calls, n_spends in steps:
        clock.advance(advance_ms / 1000)
        now = clock.monotonic()
        budget.reading()  # settle at this instant, so the calls below are dated exactly
        for _ in range(n_calls):
            budget.record_call()
            calls.append(now)
        # Calls are handed over at the next settle, spread over the time since the one before; settling
        # again at this instant dates them exactly here (else the model below would have to spread them too).
        budget.reading()
        for _ in range(n_spends):
            if budget.try_spend("op"):
                granted.append(now)
                # The ledger may forget up to one slice early, never late, and never counts future calls.
                recent = sum(1 for t in granted if t > now - window + width + 1e-9)
                # A call exactly one window old may still count: slice edges are float divisions.
                in_window = sum(1 for t in calls if t > now - window - 1e-9)
                assert recent <= ratio * in_window + floor * window + 1e-6
    # (Retries may outlive the calls that allowed them, so only the calls are bounded here.)
    assert budget.reading().calls <= len(calls) + 1e-6


# Each step: advance time (ms), make some calls, then ask for some retries, without settling in between.
busy_steps = st.lists(
    st.tuples(st.integers(0, 2500), st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=80
)


@settings(max_examples=150, deadline=None)
@given(steps=busy_steps, ratio=st.sampled_from([0.0, 0.1, 0.5, 1.0]), floor=st.sampled_from([0.0, 0.2, 1.0]))
def test_granting_on_credit_answers_as_asking_the_ledger_every_time(
    steps: list[tuple[int, int, int]], ratio: float, floor: float
) -> None:
    """A budget with its own ledger grants from what its last settle left (one lock, no ledger work); it
    must answer every ``try_spend`` exactly as a budget asking its ledger each time, and read the same."""
    clock = FakeClock()
    own = RetryBudget(ratio, min_per_second=floor, window=10, clock=clock)
    asking = RetryBudget(ratio, min_per_second=floor, window=10, clock=clock, ledger=LocalLedger())
    for advance_ms, n_calls, n_spends in steps:
        clock.advance(advance_ms / 1000)
        for _ in range(n_calls):
            own.count_call()
            asking.count_call()
        # Settled at the same instants, so calls are spread over the same spans in both.
        assert own.reading() == asking.reading()
        answers = [(own.try_spend("op"), asking.try_spend("op")) for _ in range(n_spends)]
        assert all(a == b for a, b in answers), answers
    assert own.reading() == asking.reading()


# -- through a Policy: every call counts, so retries follow the ratio ------------------------------------


def _always_down() -> None:
    raise ConnectionResetError("down")


def test_a_policy_counts_its_calls_and_asks_before_each_retry() -> None:
    import asyncio

    from bounceback import Backoff, Policy

    clock = FakeClock()
    budget = RetryBudget(0.25, min_per_second=0, window=60, clock=clock)
    policy = Policy(
        "budgeted", attempts=10, backoff=Backoff(initial=0, max_delay=0), budget=budget, clock=clock
    )
    wrapped = policy(lambda: "ok")
    for _ in range(6):
        wrapped()  # the decorator's fast path
    for _ in range(6):
        policy.call(lambda: "ok")  # the call() path

    async def ok() -> str:
        return "ok"

    for _ in range(4):
        asyncio.run(policy.acall(ok))  # async
    for _ in range(4):
        for attempt in policy.attempts():  # the block form
            with attempt:
                pass
    assert budget.reading().calls == 20
    # 25% of 21 calls (these 20 and the failing one) allows 5 retries: 6 attempts, then "budget".
    with pytest.raises(ConnectionResetError) as info:
        policy.call(_always_down)
    assert info.value.bounceback_reason == "budget"  # type: ignore[attr-defined]
    assert len(info.value.bounceback_attempts) == 6  # type: ignore[attr-defined]
    with pytest.raises(ConnectionResetError) as info:
        policy.call(_always_down)
    assert len(info.value.bounceback_attempts) == 1  # type: ignore[attr-defined]


def test_threads_spending_together_get_exactly_the_allowance() -> None:
    import sys
    import threading

    clock = FakeClock()  # frozen: every grant falls in one slice, so the allowance is exactly the floor
    budget = RetryBudget(0.0, min_per_second=50, window=10, clock=clock)
    granted = [0] * 8
    start = threading.Barrier(8)

    def spend(i: int) -> None:
        start.wait()
        granted[i] = sum(budget.try_spend("op") for _ in range(200))

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(8)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: grants race with take-backs
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert sum(granted) == 500
    assert budget.reading().retries == 500
