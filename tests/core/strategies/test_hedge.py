"""Hedging: a second attempt for a slow call, first success wins, losers cancelled or discarded, bounded."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bounceback import ConfigError, Hedge, Policy, RetryBudget, retry
from bounceback.events import AttemptHedged, EventBus
from bounceback.settings import StaticSettings
from bounceback.testing import FakeClock


def test_hedging_must_be_asked_for_an_idempotent_call() -> None:
    with pytest.raises(ConfigError) as info:
        Hedge("pay", delay=0.1)
    assert info.value.field == "idempotent" and "payment" in str(info.value)
    bad: list[tuple[dict[str, object], str]] = [
        ({"delay": "p100"}, "delay"),
        ({"delay": -1}, "delay"),
        ({"delay": 0.1, "max_hedges": 0}, "max_hedges"),
    ]
    for kwargs, field in bad:
        with pytest.raises(ConfigError) as info:
            Hedge("read", idempotent=True, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field


def test_async_first_success_wins_and_the_loser_is_cancelled() -> None:
    clock = FakeClock()
    bus = EventBus()
    seen: list[object] = []
    bus.subscribe(seen.append)
    hedge = Hedge("read", delay=0.2, idempotent=True, clock=clock, budget=None, bus=bus)
    cancelled: list[int] = []
    calls = 0

    async def read() -> str:
        nonlocal calls
        calls += 1
        me = calls
        if me == 1:
            try:
                await asyncio.Event().wait()  # the slow replica: never answers
            except asyncio.CancelledError:
                cancelled.append(me)
                raise
        return f"answer {me}"

    assert asyncio.run(hedge.acall(read)) == "answer 2"
    assert cancelled == [1] and clock.sleeps == [0.2]
    assert (hedge.hedged, hedge.won_by_hedge) == (1, 1)
    assert [type(e) for e in seen] == [AttemptHedged] and seen[0].hedge == 1  # type: ignore[attr-defined]


def test_async_fast_answer_starts_no_hedge() -> None:
    clock = FakeClock()
    hedge = Hedge("read", delay=0.2, idempotent=True, clock=clock, budget=None)

    @hedge
    async def read() -> str:
        return "fast"

    assert asyncio.run(read()) == "fast"
    assert hedge.hedged == 0


def test_a_failure_with_nothing_else_running_hedges_at_once_and_the_last_error_is_raised() -> None:
    hedge = Hedge("read", delay=5, idempotent=True, max_hedges=2, clock=FakeClock(), budget=None)
    attempts: list[int] = []

    async def broken() -> str:
        attempts.append(1)
        raise ConnectionResetError(f"reset {len(attempts)}")

    with pytest.raises(ConnectionResetError, match="reset 3"):
        asyncio.run(hedge.acall(broken))
    assert len(attempts) == 3  # the first and two hedges, none waited for the delay


def test_the_budget_bounds_hedges() -> None:
    clock = FakeClock()

    async def slowish() -> str:
        for _ in range(5):
            await asyncio.sleep(0)  # slower than the (virtual) hedge delay
        return "answer"

    spent = RetryBudget(0.0, min_per_second=0.0, name="read", clock=clock)  # nothing to spend
    bounded = Hedge("read", delay=0.1, idempotent=True, clock=clock, budget=spent)
    unbounded = Hedge("read", delay=0.1, idempotent=True, clock=clock, budget=None)
    assert asyncio.run(bounded.acall(slowish)) == "answer"
    assert asyncio.run(unbounded.acall(slowish)) == "answer"
    assert (bounded.hedged, unbounded.hedged) == (0, 1)


def test_percentile_delay_follows_observed_latencies() -> None:
    clock = FakeClock()
    hedge = Hedge("read", delay="p90", initial_delay=3, idempotent=True, clock=clock, budget=None)
    assert hedge.current_delay() == 3  # too few calls seen

    async def timed(seconds: float) -> None:
        clock.advance(seconds)

    async def main() -> None:
        for i in range(100):
            await hedge.acall(timed, (i % 10 + 1) / 100)  # 10 ms .. 100 ms

    asyncio.run(main())
    assert hedge.current_delay() == pytest.approx(0.09)


def test_threads_first_success_wins_and_the_loser_is_discarded() -> None:
    hedge = Hedge("read", delay=0.01, idempotent=True, budget=None)
    release = threading.Event()
    finished: list[str] = []
    lock = threading.Lock()
    calls = 0

    def read() -> str:
        nonlocal calls
        with lock:
            calls += 1
            me = calls
        if me == 1:
            release.wait()  # stuck until the test lets it go
            finished.append("slow")
            return "slow"
        return "fast"

    try:
        assert hedge.call(read) == "fast"
        assert hedge.won_by_hedge == 1
    finally:
        release.set()
        hedge.close()


def test_threads_errors_propagate_when_every_attempt_failed() -> None:
    hedge = Hedge("read", delay=10, idempotent=True, budget=None)

    def broken() -> str:
        raise TimeoutError("no answer")

    try:
        with pytest.raises(TimeoutError):
            hedge.call(broken)
        assert hedge.hedged == 1  # the failure started the hedge at once; it failed too
    finally:
        hedge.close()


def test_inside_a_policy_each_attempt_is_hedged() -> None:
    clock = FakeClock()
    hedge = Hedge("quotes", delay=0.5, idempotent=True, clock=clock, budget=None)
    policy = Policy("quotes", attempts=2, clock=clock, budget=None)
    outcomes: list[str | Exception] = [ConnectionResetError("a"), ConnectionResetError("b"), "ok"]

    @policy
    @hedge
    async def quote() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert asyncio.run(quote()) == "ok"  # attempt 1 and its hedge failed; attempt 2 answered


def test_policy_hedge_argument_hedges_each_attempt_inside_the_breaker() -> None:
    from bounceback import Backoff, CircuitBreaker

    clock = FakeClock()
    breaker = CircuitBreaker("quotes", clock=clock)
    hedge = Hedge("quotes", delay=0.5, idempotent=True, clock=clock, budget=None)
    policy = Policy(
        "quotes",
        attempts=2,
        hedge=hedge,
        breaker=breaker,
        backoff=Backoff(initial=0.1),
        clock=clock,
        budget=None,
    )
    assert policy.hedge is hedge and policy.replace(attempts=3).hedge is hedge
    outcomes: list[str | Exception] = [ConnectionResetError("a"), ConnectionResetError("b"), "ok"]

    @policy
    async def quote() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert asyncio.run(quote()) == "ok"  # attempt 1 and its hedge failed; attempt 2 answered
    assert hedge.hedged == 1  # attempt 2 answered before its delay: no hedge
    # The breaker saw one outcome per attempt, not one per copy.
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures) == (2, 1)


def test_policy_hedge_runs_sync_attempts_on_the_hedges_threads() -> None:
    from bounceback import CircuitBreaker

    breaker = CircuitBreaker("read-sync")
    hedge = Hedge("read-sync", delay=0.01, idempotent=True, budget=None)
    policy = Policy("read-sync", attempts=2, hedge=hedge, breaker=breaker, budget=None)
    release = threading.Event()
    lock = threading.Lock()
    calls = 0

    def read(key: str) -> str:
        nonlocal calls
        with lock:
            calls += 1
            me = calls
        if me == 1:
            release.wait()  # the first copy is stuck until the test lets it go
            return "slow " + key
        return "fast " + key

    try:
        assert policy.call(read, "k") == "fast k"  # the first copy is still stuck: its hedge answered
        assert hedge.won_by_hedge == 1
        assert policy(read)("j") == "fast j"  # the decorator form; this first copy answers at once
        assert (hedge.hedged, hedge.won_by_hedge) == (1, 1)
        metrics = breaker.metrics()
        assert (metrics.calls, metrics.failures) == (2, 0)  # one outcome per call, not per copy
    finally:
        release.set()
        hedge.close()


def test_hedges_and_retries_spend_from_one_budget() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.0, min_per_second=0.1, window=10, name="one-pool", clock=clock)  # one retry in all
    hedge = Hedge("one-pool", delay=5, idempotent=True, clock=clock, budget=budget)
    policy = Policy("one-pool", attempts=5, hedge=hedge, budget=budget, clock=clock)
    calls = 0

    async def down() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("down")

    with pytest.raises(ConnectionResetError) as info:
        asyncio.run(policy.acall(down))
    # The first attempt failed, its hedge took the only retry the budget had, so the policy could not retry.
    assert (calls, hedge.hedged) == (2, 1)
    assert info.value.bounceback_reason == "budget"  # type: ignore[attr-defined]


def test_policy_hedge_must_be_a_hedge_spending_the_policys_budget() -> None:
    clock = FakeClock()
    # Named after the operation, with the same clock: both take the operation's default budget.
    same = Hedge("prices", delay=0.1, idempotent=True, clock=clock)
    assert Policy("prices", hedge=same, clock=clock).hedge is same

    # Without budget=, a policy spends from its hedge's budget, whatever its name (retry() names it late).
    @retry(hedge=same, clock=clock)
    def fetch_prices() -> str:
        return "prices"

    assert fetch_prices() == "prices"
    assert fetch_prices.policy.budget is same.budget is not None  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        Policy("prices", hedge=same, budget=RetryBudget(0.5, clock=clock), clock=clock)
    assert info.value.field == "hedge" and "budget" in str(info.value)
    with pytest.raises(ConfigError) as info:
        Policy("prices", hedge=Hedge("prices", delay=0.1, idempotent=True, budget=None), clock=clock)
    assert info.value.field == "hedge"
    with pytest.raises(ConfigError) as info:
        Policy("prices", hedge="p95", clock=clock)  # type: ignore[arg-type]
    assert info.value.field == "hedge" and "idempotent=True" in str(info.value)


def test_settings_set_the_delay_live_and_code_wins() -> None:
    settings = StaticSettings({"hedge.delay": "200ms"}, operations={"search": {"hedge.max_hedges": 3}})
    hedge = Hedge("search", idempotent=True, settings=settings, budget=None)
    assert (hedge.current_delay(), hedge.max_hedges) == (0.2, 3)
    settings.set("hedge.percentile", "95", operation="search")
    assert hedge.delay == "p95" and hedge.current_delay() == 0.2  # the fixed delay until latencies are seen
    fixed = Hedge("search", idempotent=True, delay=0.05, settings=settings, budget=None)
    settings.set("hedge.delay", "1s")
    assert fixed.current_delay() == 0.05 and fixed.max_hedges == 3
    assert Hedge("other", idempotent=True, budget=None).current_delay() == 1.0  # the built-in default
    hedge.close()
    fixed.close()
