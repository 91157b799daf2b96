"""The concurrency and rate limits in the simulator: the same limiter classes, on virtual time."""

from __future__ import annotations

from bounceback import Backoff
from bounceback.core._settings import StaticSettings
from bounceback.sim import Capacity, ConcurrencySpec, Contention, PolicySpec, RateLimitSpec, simulate


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
