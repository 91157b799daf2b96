"""A retry budget caps load amplification at total failure near 1 + ratio; without one it is 1 + retries."""

from __future__ import annotations

import pytest

from bounceback import Backoff
from bounceback.sim import BudgetSpec, Outage, PolicySpec, simulate

# The service fails every call for the whole run (the outage covers all arrivals).
ALWAYS_DOWN = Outage(clients=200, rate_per_client=0.5, outage_start=0, outage_seconds=300, after_seconds=0)
QUICK = Backoff(initial=0.05, max_delay=0.5)


@pytest.mark.parametrize("attempts", [3, 5, 8])
def test_without_a_budget_every_request_makes_all_its_attempts(attempts: int) -> None:
    result = simulate(ALWAYS_DOWN, PolicySpec("plain", QUICK, attempts=attempts), seed=1)
    # Only requests of the last seconds retry after the outage ends (and then succeed): at most ~1%.
    assert attempts * 0.99 <= result.amplification <= attempts
    assert result.budget_refusals == 0


@pytest.mark.parametrize("ratio", [0.05, 0.1, 0.2, 0.5])
def test_with_a_budget_amplification_stays_near_one_plus_ratio(ratio: float) -> None:
    spec = PolicySpec("budget", QUICK, attempts=5, budget=BudgetSpec(ratio, min_per_second=0))
    result = simulate(ALWAYS_DOWN, spec, seed=1)
    assert result.amplification == pytest.approx(1 + ratio, abs=0.02)
    assert result.budget_refusals > 0


def test_the_floor_adds_min_per_second_over_the_request_rate() -> None:
    rate = ALWAYS_DOWN.clients * ALWAYS_DOWN.rate_per_client  # 100 requests per second
    spec = PolicySpec("budget", QUICK, attempts=5, budget=BudgetSpec(0.1, min_per_second=5))
    result = simulate(ALWAYS_DOWN, spec, seed=1)
    assert result.amplification == pytest.approx(1 + 0.1 + 5 / rate, abs=0.02)


def test_a_floor_per_client_is_paid_once_per_client() -> None:
    # 200 clients with a floor of 0.1 retry/s each: up to 20 retries/s in all, where one shared budget
    # with the same settings allows 0.1/s. Low-traffic clients with their own budgets live on the floor.
    budget = BudgetSpec(0.1, min_per_second=0.1)
    shared = simulate(ALWAYS_DOWN, PolicySpec("shared", QUICK, budget=budget), seed=1)
    own = simulate(ALWAYS_DOWN, PolicySpec("own", QUICK, budget=BudgetSpec(0.1, 0.1, shared=False)), seed=1)
    assert shared.amplification == pytest.approx(1.1, abs=0.02)
    assert own.amplification > shared.amplification + 0.05
    assert own.amplification < 1 + 0.1 + 0.2 + 0.02
