"""The concurrency and rate limits in the simulator: the same limiter classes, on virtual time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bounceback import Backoff
from bounceback.core.settings._source import StaticSettings
from bounceback.sim import (
    BreakerSpec,
    Capacity,
    ConcurrencySpec,
    Contention,
    PolicySpec,
    RateLimitSpec,
    simulate,
)


def test_a_rate_limit_caps_what_each_client_sends() -> None:
    model = Capacity(clients=50, surge_start=30, surge_seconds=30, after_seconds=60)
    plain = PolicySpec("plain", breaker=None, budget=None)
    limited = plain.replace(label="rate", rate_limit=RateLimitSpec(rate=0.1, burst=1))
    a, b = simulate(model, plain, seed=4), simulate(model, limited, seed=4)
    assert a.requests == b.requests and a.shed == 0
    assert b.shed > 0 and b.calls < a.calls
    horizon = b.completion
    # Never more than the bucket allows per client: burst + rate * time.
    assert b.calls <= 50 * (1 + 0.1 * horizon) + 1
    assert "rate 0.1/s" in limited.describe()


def test_waiting_for_a_token_delays_instead_of_refusing() -> None:
    model = Capacity(clients=20, surge_start=30, surge_seconds=30, after_seconds=60)
    base = PolicySpec("p", breaker=None, budget=None)
    refusing = simulate(model, base.replace(rate_limit=RateLimitSpec(rate=0.2, burst=1)), seed=1)
    waiting = simulate(model, base.replace(rate_limit=RateLimitSpec(rate=0.2, burst=1, max_wait=30)), seed=1)
    assert waiting.shed < refusing.shed
    assert waiting.latency_p99 > refusing.latency_p99  # the wait shows up as latency


def test_a_concurrency_limit_refuses_and_retries_what_is_over_it() -> None:
    model = Contention(clients=30)
    base = PolicySpec("p", Backoff(initial=0.005, max_delay=2), attempts=None, breaker=None, budget=None)
    result = simulate(model, base.replace(concurrency=ConcurrencySpec(1)), seed=2)
    assert result.succeeded == result.requests  # one request per client: one slot is always free
    assert result.rejected == 0
    busy = Capacity(clients=5, rate_per_client=5, surge_start=10, surge_seconds=10, after_seconds=10)
    limited = simulate(
        busy, PolicySpec("p", breaker=None, budget=None, concurrency=ConcurrencySpec(1)), seed=3
    )
    assert limited.rejected > 0  # several requests of one client at once: the second is refused


def test_settings_bring_the_limits_into_the_simulation() -> None:
    values = StaticSettings(
        {"concurrency.max_in_flight": 3, "rate_limit.rate": 2, "rate_limit.max_wait": "1s"}
    ).effective("x")
    spec = PolicySpec.from_settings(values)
    assert spec.concurrency == ConcurrencySpec(3)
    assert spec.rate_limit == RateLimitSpec(2.0, 0, 1.0)
    assert PolicySpec.from_settings(StaticSettings({}).effective("x")).rate_limit is None


@settings(max_examples=25, deadline=None)
@given(
    attempts=st.integers(1, 5),
    concurrency=st.sampled_from([None, 1, 2]),
    rate=st.sampled_from([None, 0.05, 0.5]),
    max_wait=st.sampled_from([0.0, 5.0]),
    breaker=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_bookkeeping_adds_up_with_limits(
    attempts: int, concurrency: int | None, rate: float | None, max_wait: float, breaker: bool, seed: int
) -> None:
    model = Capacity(clients=20, rate_per_client=1, surge_start=10, surge_seconds=10, after_seconds=20)
    spec = PolicySpec(
        "p",
        attempts=attempts,
        breaker=BreakerSpec({"min_calls": 4, "open_seconds": 2}) if breaker else None,
        budget=None,
        concurrency=ConcurrencySpec(concurrency) if concurrency else None,
        rate_limit=RateLimitSpec(rate, burst=2, max_wait=max_wait) if rate else None,
    )
    r = simulate(model, spec, seed=seed)
    assert sum(r.calls_series) == r.calls
    # Every attempt reached the service or was refused by a gate; a request with no call was refused.
    assert r.calls + r.rejected + r.shed <= attempts * r.requests
    assert r.calls >= r.requests - r.rejected - r.shed
    if rate is None:
        assert r.shed == 0
    else:
        assert r.calls <= 20 * (2 + rate * r.completion) + 1e-6  # each client's bucket: burst + rate * t
    if concurrency is None and not breaker:
        assert r.rejected == 0
