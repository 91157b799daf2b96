"""Models, policy specs and variants: validation, settings mapping, the services' rules."""

from __future__ import annotations

import math

import pytest

from bounceback import Backoff, ConfigError
from bounceback.core.settings._source import StaticSettings
from bounceback.sim import (
    BreakerSpec,
    BudgetSpec,
    Capacity,
    Contention,
    Outage,
    PolicySpec,
    ThrottleSpec,
    compare,
    variants,
)
from bounceback.sim._models import CONFLICT, DOWN, OK, OVERLOADED, TIMED_OUT


def test_optimistic_concurrency_lets_only_the_first_overlapping_commit_win() -> None:
    record = Contention(clients=2, latency=1.0).build(math.inf)
    done_a, token_a = record.begin(0.0)
    done_b, token_b = record.begin(0.5)
    assert record.finish(done_a, token_a) == OK
    assert record.finish(done_b, token_b) == CONFLICT
    done_c, token_c = record.begin(1.6)  # read after the commit: no conflict
    assert record.finish(done_c, token_c) == OK


def test_the_queue_serves_capacity_per_second_then_times_out_then_sheds() -> None:
    # 10 calls/s capacity, 0.1 s latency, 0.5 s client timeout, 1 s queue limit.
    service = Capacity(
        clients=10, rate_per_client=1, headroom=1, latency=0.1, timeout=0.5, max_queue_seconds=1
    ).build(math.inf)
    outcomes = [service.begin(0.0) for _ in range(14)]
    codes = [code for _, code in outcomes]
    assert codes[:5] == [OK] * 5  # waits 0.0 .. 0.4 s plus 0.1 s latency: within the timeout
    assert set(codes[5:11]) == {TIMED_OUT}  # admitted, worked on, but answered too late
    assert codes[11:] == [OVERLOADED] * 3  # would wait more than 1 s: shed at the door
    assert outcomes[0][0] == pytest.approx(0.1)
    assert outcomes[6][0] == pytest.approx(0.5)  # the client gives up at its timeout
    # A policy's own attempt timeout replaces the model's.
    patient = Capacity(clients=10, rate_per_client=1, headroom=1, latency=0.1).build(attempt_timeout=10)
    assert [patient.begin(0.0)[1] for _ in range(8)] == [OK] * 8


def test_the_outage_fails_fast_inside_its_window_only() -> None:
    service = Outage(clients=10, outage_start=10, outage_seconds=5).build(math.inf)
    assert service.begin(9.9)[1] == OK
    assert service.begin(10.0)[1] == DOWN
    assert service.begin(14.99)[1] == DOWN
    assert service.begin(15.0)[1] == OK


def test_request_rates_follow_the_models() -> None:
    outage = Outage(clients=200, rate_per_client=0.5, outage_start=10, outage_seconds=10, after_seconds=5)
    assert outage.request_rate(0) == 100 and outage.request_rate(24.9) == 100
    assert outage.request_rate(25) == 0 and outage.horizon == 25
    surge = Capacity(clients=100, surge_start=10, surge_seconds=10, surge_factor=4)
    assert [surge.request_rate(t) for t in (5, 10, 19.9, 20)] == [10, 40, 40, 10]
    assert surge.incident == (10, 20)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Contention(clients=0), "clients"),
        (lambda: Contention(clients=True), "clients"),
        (lambda: Contention(latency=0), "latency"),
        (lambda: Outage(rate_per_client=-1), "rate_per_client"),
        (lambda: Outage(outage_seconds=math.nan), "outage_seconds"),
        (lambda: Capacity(headroom=0), "headroom"),
        (lambda: PolicySpec(attempts=0), "attempts"),
        (lambda: PolicySpec(deadline=0), "deadline"),
        (lambda: PolicySpec(backoff="full"), "backoff"),  # type: ignore[arg-type]
        (lambda: BudgetSpec(ratio=-0.5), "ratio"),
        (lambda: BreakerSpec({"open_sconds": 5}), "breaker"),
        (lambda: variants(PolicySpec(), "colour"), "compare"),
        (lambda: compare(Contention(), [PolicySpec("a"), PolicySpec("a")]), "label"),
        (lambda: compare(Contention(), []), "specs"),
    ],
)
def test_bad_values_raise_config_error(make: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()  # type: ignore[operator]
    assert info.value.field == field


def test_a_spec_from_settings_reads_retry_breaker_and_budget_keys() -> None:
    settings = StaticSettings(
        {"retry.max_attempts": 7, "retry.initial_delay": 0.5, "retry.jitter": "decorrelated"},
        operations={
            "pay": {"budget.enabled": True, "budget.ratio": 0.1, "breaker.open_seconds": 12},
            "quiet": {"breaker.enabled": False, "budget.enabled": False, "retry.deadline": 20},
        },
    )
    pay = PolicySpec.from_settings(settings.effective("pay"), label="pay")
    assert pay.attempts == 7
    assert pay.backoff == Backoff(initial=0.5, max_delay=30, jitter="decorrelated")
    assert pay.budget == BudgetSpec(0.1, 10.0, 10.0)
    assert pay.breaker is not None and pay.breaker.options["open_seconds"] == 12
    quiet = PolicySpec.from_settings(settings.effective("quiet"))
    assert quiet.breaker is None and quiet.budget is None and quiet.deadline == 20
    assert "decorrelated" in pay.describe() and "budget 10%" in pay.describe()
    plain = PolicySpec.from_settings(StaticSettings({}).effective(None))  # the built-in defaults
    assert plain.deadline == 30 and plain.budget == BudgetSpec() and plain.breaker is not None


def test_variants_change_one_thing_at_a_time() -> None:
    base = PolicySpec("b", Backoff(jitter="equal"), breaker=BreakerSpec({"open_seconds": 9}))
    jitters = variants(base, "jitter")
    assert [s.backoff.jitter.value for s in jitters] == ["none", "full", "equal", "decorrelated"]
    assert all(s.breaker == base.breaker for s in jitters)
    off, on = variants(base, "budget")
    assert off.budget is None and on.budget == BudgetSpec()
    off, on = variants(base, "breaker")
    assert off.breaker is None and on.breaker == base.breaker
    every = variants(base, "all")
    assert [s.label for s in every][-3:] == [
        "equal + breaker + budget",
        "equal + throttle",
        "equal + breaker + budget + throttle",
    ]
    assert every[0].breaker is None and every[0].budget is None and every[0].throttle is None
    off, on = variants(base, "throttle")
    assert off.throttle is None and on.throttle == ThrottleSpec()
    old, new = variants(base, "defaults")
    assert (old.deadline, old.budget, new.deadline, new.budget) == (math.inf, None, 30.0, BudgetSpec())
    assert old.breaker is not None and old.breaker.options["open_seconds_max"] == 300.0
