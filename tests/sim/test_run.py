"""The event loop: determinism, bookkeeping invariants, the engine's limits, speed at scale."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bounceback import Backoff
from bounceback.sim import (
    BreakerSpec,
    BudgetSpec,
    Capacity,
    Contention,
    Outage,
    PolicySpec,
    ThrottleSpec,
    VirtualClock,
    compare,
    default_specs,
    simulate,
    variants,
)

SMALL_OUTAGE = Outage(clients=100, outage_start=20, outage_seconds=60, after_seconds=40)
SMALL_SURGE = Capacity(clients=100, surge_start=20, surge_seconds=20, after_seconds=60)


@pytest.mark.parametrize("model", [Contention(clients=30), SMALL_OUTAGE, SMALL_SURGE], ids=lambda m: m.name)
def test_same_seed_same_numbers_other_seed_other_numbers(model: object) -> None:
    specs = variants(PolicySpec(breaker=BreakerSpec(), budget=BudgetSpec()), "all")
    first = compare(model, specs, seed=7).to_dict()  # type: ignore[arg-type]
    again = compare(model, specs, seed=7).to_dict()  # type: ignore[arg-type]
    other = compare(model, specs, seed=8).to_dict()  # type: ignore[arg-type]
    assert first == again
    assert first != other


def test_every_policy_of_one_seed_sees_the_same_requests() -> None:
    report = compare(SMALL_OUTAGE, variants(PolicySpec(), "all"), seed=3)
    assert len({r.requests for r in report.results}) == 1


@settings(max_examples=25, deadline=None)
@given(
    attempts=st.integers(1, 6),
    jitter=st.sampled_from(["none", "full", "equal", "decorrelated"]),
    breaker=st.booleans(),
    budget=st.booleans(),
    throttle=st.booleans(),
    seed=st.integers(0, 1000),
    model=st.sampled_from([Contention(clients=15), SMALL_OUTAGE, SMALL_SURGE]),
)
def test_bookkeeping_adds_up(
    attempts: int, jitter: str, breaker: bool, budget: bool, throttle: bool, seed: int, model: object
) -> None:
    spec = PolicySpec(
        "p",
        Backoff(initial=0.01, max_delay=1, jitter=jitter),
        attempts=attempts,
        breaker=BreakerSpec({"min_calls": 4, "open_seconds": 2}) if breaker else None,
        budget=BudgetSpec(0.2, 1.0) if budget else None,
        throttle=ThrottleSpec(window=20) if throttle else None,
    )
    r = simulate(model, spec, seed=seed)  # type: ignore[arg-type]
    assert sum(r.calls_series) == r.calls
    assert 0 <= r.succeeded <= r.requests
    # Every attempt reached the service, was refused by the breaker or was shed by the throttle (which
    # ends its request); never more than allowed.
    assert r.calls + r.rejected + r.shed <= attempts * r.requests
    assert r.calls >= r.requests - r.rejected - r.shed
    assert r.shed <= r.requests
    assert r.calls_during_incident <= r.calls
    assert 0 <= r.latency_p50 <= r.latency_p99 <= r.completion
    if not breaker:
        assert r.rejected == 0 and r.breaker_openings == 0
    if not budget:
        assert r.budget_refusals == 0
    if not throttle:
        assert r.shed == 0
    if r.recovery_seconds is not None and r.requests_during_incident:
        assert r.incident_amplification == r.calls_during_incident / r.requests_during_incident


def test_deadline_bounds_every_request() -> None:
    spec = PolicySpec("d", Backoff(initial=0.5, max_delay=10), attempts=None, deadline=4.0)
    r = simulate(SMALL_OUTAGE, spec, seed=2)
    # The last attempt starts before the deadline and takes at most the model's timeout.
    assert r.latency_p99 <= 4.0 + SMALL_OUTAGE.timeout
    assert r.succeeded < r.requests


def test_attempt_timeout_replaces_the_models_timeout() -> None:
    # Under the surge, answers come late: a shorter timeout gives up on them sooner (and retries more).
    patient = simulate(SMALL_SURGE, PolicySpec("patient", attempts=1, attempt_timeout=5.0), seed=1)
    hasty = simulate(SMALL_SURGE, PolicySpec("hasty", attempts=1, attempt_timeout=0.06), seed=1)
    assert hasty.succeeded < patient.succeeded


def test_an_outage_with_a_breaker_sends_far_fewer_calls_and_waits_for_probes() -> None:
    plain = simulate(SMALL_OUTAGE, PolicySpec("plain"), seed=1)
    guarded = simulate(SMALL_OUTAGE, PolicySpec("guarded", breaker=BreakerSpec({"open_seconds": 5})), seed=1)
    assert guarded.breaker_openings > 0
    assert guarded.rejected > 0
    assert guarded.calls_during_incident < plain.calls_during_incident / 2
    # Waiting for the breaker's next probe makes requests slower than giving up after 5 quick failures.
    assert guarded.latency_p99 > plain.latency_p99


def test_a_budget_cuts_calls_during_an_outage() -> None:
    plain = simulate(SMALL_OUTAGE, PolicySpec("plain"), seed=1)
    budget = simulate(SMALL_OUTAGE, PolicySpec("budget", budget=BudgetSpec(0.1, 0.1)), seed=1)
    assert budget.calls_during_incident < plain.calls_during_incident / 2
    assert budget.budget_refusals > 0


def test_a_retry_storm_outlives_a_surge_unless_a_budget_damps_it() -> None:
    # Metastable failure: after the surge, timed-out attempts keep the queue full with their retries.
    model = Capacity(clients=300, surge_seconds=30, after_seconds=120)
    plain = simulate(model, PolicySpec("plain"), seed=1)
    damped = simulate(model, PolicySpec("budget", budget=BudgetSpec(0.1, 1.0)), seed=1)
    assert plain.recovery_seconds == math.inf
    assert damped.recovery_seconds is not None and damped.recovery_seconds < 60
    assert damped.success_rate > plain.success_rate


def test_contention_has_no_incident_and_ends_when_the_last_write_lands() -> None:
    r = simulate(Contention(clients=10), PolicySpec(attempts=None), seed=1)
    assert r.recovery_seconds is None
    assert r.succeeded == r.requests == 10
    assert r.completion > 0


def test_a_thousand_clients_through_a_ten_minute_outage() -> None:
    # How long it takes is a benchmark's business (benchmarks/sim_defaults.py), not a test's.
    model = Outage(clients=1000, outage_seconds=600)
    r = simulate(model, PolicySpec("no breaker, no budget"), seed=1)
    assert r.requests > 90_000  # 100 requests/s for 960 s
    assert r.calls_during_incident > 4 * 60_000  # five attempts each while down


@pytest.mark.parametrize("model", [Outage(), Capacity()], ids=lambda m: m.name)
def test_the_default_policy_rides_out_the_incident_and_recovers_soon_after(model: Outage | Capacity) -> None:
    old, new = default_specs()
    report = compare(model, [old, new], seed=0)
    before, now = report.results
    limit = 35.0 if model.name == "outage" else 30.0
    assert now.recovery_seconds is not None and now.recovery_seconds <= limit
    assert now.success_rate >= (0.37 if model.name == "outage" else 0.60)
    assert now.latency_p99 <= 35.0
    assert now.incident_amplification <= 1.3
    # The 0.1.0 defaults (open time growing to 300 s, in step, waited for without a deadline) never did.
    assert before.recovery_seconds == math.inf
    assert before.latency_p99 > 300 and now.success_rate > before.success_rate


def test_jittered_open_times_keep_a_fleet_of_breakers_from_probing_in_step() -> None:
    old, new = default_specs()
    report = compare(Outage(), [old, new], seed=0)
    before, now = report.results
    assert before.lockstep > 2 * now.lockstep
    assert now.lockstep < 3.0


def test_adaptive_throttling_sheds_locally_during_a_surge_and_lets_traffic_back_after() -> None:
    base = PolicySpec("plain", breaker=None, budget=None)
    surge = Capacity(clients=200, surge_start=30, surge_seconds=30, after_seconds=240)
    report = compare(surge, variants(base, "throttle"), seed=2)
    plain, throttled = report.results
    assert throttled.shed > 0 and plain.shed == 0
    assert throttled.calls_during_incident < plain.calls_during_incident  # the service got less to refuse
    assert throttled.success_rate > plain.success_rate
    last_minute = throttled.rates()[240:300]  # before the clients stop at 300 s
    assert sum(last_minute) / 60 > 0.9 * (200 * 0.1)  # normal traffic again by the end


def test_the_virtual_clock_refuses_to_sleep() -> None:
    clock = VirtualClock()
    clock.now = 3.0
    assert clock.monotonic() == 3.0
    with pytest.raises(RuntimeError, match="schedules waits"):
        clock.sleep(1.0)


def test_the_real_circuit_breaker_runs_on_virtual_time_and_stays_private() -> None:
    from bounceback.core._registry import registry

    before = dict(registry._breakers)
    options = {"consecutive_failures": 3, "open_seconds": 2, "open_seconds_max": 4, "half_open_calls": 1}
    spec = PolicySpec("b", breaker=BreakerSpec(options))
    r = simulate(Outage(clients=20, outage_start=10, outage_seconds=30, after_seconds=60), spec, seed=1)
    # Opened during the outage, probed every few (virtual) seconds, closed again afterwards.
    assert r.breaker_openings >= 20
    assert r.rejected > 0
    assert r.recovery_seconds is not None and r.recovery_seconds < 30
    assert registry._breakers == before  # the simulated breakers are not the program's breakers
