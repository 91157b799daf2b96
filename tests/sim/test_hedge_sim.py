"""Hedging in the simulator: what it does to the tail latency, and the load it adds."""

from __future__ import annotations

from typing import Any

import pytest

from bounceback.errors import ConfigError
from bounceback.sim import BudgetSpec, HedgeSpec, PolicySpec, SlowTail, compare, simulate

PLAIN = PolicySpec("plain", breaker=None, budget=None)


def test_a_hedge_cuts_the_tail_for_a_few_extra_calls() -> None:
    model = SlowTail(clients=50, seconds=60, slow_fraction=0.05, latency=0.02, slow_latency=1.0)
    plain = simulate(model, PLAIN, seed=3)
    hedged = simulate(model, PLAIN.replace(label="hedged", hedge=HedgeSpec(0.1)), seed=3)
    assert plain.requests == hedged.requests and plain.hedges == 0
    assert plain.latency_p99 == pytest.approx(1.0)  # the slow replica's latency
    assert hedged.latency_p99 <= 0.1 + 0.02 + 1e-9  # the delay, then a fast copy
    # Every extra call is a hedge, and only the slow ones (about 5%) were hedged.
    assert hedged.calls == hedged.requests + hedged.hedges
    assert 0.02 * hedged.requests < hedged.hedges < 0.1 * hedged.requests
    assert hedged.succeeded == hedged.requests


def test_hedges_multiply_the_load_when_every_copy_is_slow() -> None:
    model = SlowTail(clients=10, seconds=20, slow_fraction=1.0)
    result = simulate(model, PLAIN.replace(hedge=HedgeSpec(0.1, max_hedges=2)), seed=1)
    assert result.hedges == 2 * result.requests  # two more copies of every request
    assert result.calls == 3 * result.requests
    assert result.latency_p50 == pytest.approx(1.0)  # and no faster: every replica is slow


def test_the_retry_budget_bounds_the_hedges() -> None:
    model = SlowTail(clients=20, seconds=60, slow_fraction=0.5)
    free = simulate(model, PLAIN.replace(hedge=HedgeSpec(0.1)), seed=2)
    bounded = simulate(
        model,
        PLAIN.replace(hedge=HedgeSpec(0.1), budget=BudgetSpec(ratio=0.1, min_per_second=0, window=10)),
        seed=2,
    )
    assert bounded.budget_refusals > 0
    assert bounded.hedges < free.hedges
    assert bounded.hedges <= 0.1 * bounded.requests + 20  # ratio x calls, plus the window's first few


def test_a_percentile_delay_follows_the_latencies_seen() -> None:
    model = SlowTail(clients=50, seconds=60, slow_fraction=0.05)
    fixed = simulate(model, PLAIN.replace(hedge=HedgeSpec(0.5)), seed=4)
    learned = simulate(model, PLAIN.replace(hedge=HedgeSpec(0.5, percentile=0.9)), seed=4)
    # p90 of the latencies seen is the fast replica's: hedges go out after 20 ms, not 500 ms.
    assert learned.latency_p99 < fixed.latency_p99 / 5


def test_the_table_shows_the_hedges_and_runs_are_repeatable() -> None:
    model = SlowTail(clients=10, seconds=10)
    specs = [PLAIN, PLAIN.replace(label="hedged", hedge=HedgeSpec(0.1))]
    report = compare(model, specs, seed=5)
    assert "hedges" in report.table().splitlines()[0]
    assert report.result("hedged").to_dict()["hedges"] == report.result("hedged").hedges > 0
    assert simulate(model, specs[1], seed=5) == simulate(model, specs[1], seed=5)
    assert "hedge after 0.1s" in specs[1].describe()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"delay": 0}, "delay"), ({"max_hedges": 0}, "max_hedges"), ({"percentile": 95}, "percentile")],
)
def test_bad_hedge_specs_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        HedgeSpec(**kwargs)
