"""The Prometheus exporter against the real prometheus_client: counters from events, live breaker gauges."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bounceback import CircuitBreaker, CircuitOpenError, Policy
from bounceback.events import EventBus, Registry
from bounceback.integrations import PrometheusExporter, export_prometheus
from bounceback.testing import FakeClock


@pytest.fixture
def setup() -> tuple[CollectorRegistry, EventBus, Registry, FakeClock]:
    return CollectorRegistry(), EventBus(), Registry(), FakeClock()


def test_recovery_and_breaker_metrics(setup: tuple[CollectorRegistry, EventBus, Registry, FakeClock]) -> None:
    reg, bus, breakers, clock = setup
    exporter = PrometheusExporter(reg, bus=bus, breakers=breakers)
    brk = CircuitBreaker(
        "prom-db",
        window=3,
        min_calls=3,
        open_seconds=10,
        half_open_calls=1,
        health_check=lambda: False,
        clock=clock,
        bus=bus,
    )
    breakers.add_breaker(brk)
    policy = Policy("fetch", breaker=brk, attempts=3, clock=clock, bus=bus)
    answers = [ConnectionResetError("reset"), "row"]

    def fetch() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert policy.call(fetch) == "row"
    sample = reg.get_sample_value
    assert sample("bounceback_attempt_failures_total", {"operation": "fetch", "kind": "transient"}) == 1
    assert sample("bounceback_retries_total", {"operation": "fetch", "reason": "backoff"}) == 1
    assert (
        sample("bounceback_recoveries_total", {"operation": "fetch", "outcome": "succeeded", "reason": ""})
        == 1
    )
    assert sample("bounceback_recovery_seconds_count", {"operation": "fetch", "outcome": "succeeded"}) == 1
    assert sample("bounceback_breaker_state", {"breaker": "prom-db", "state": "closed"}) == 1
    assert sample("bounceback_breaker_window_calls", {"breaker": "prom-db"}) == 2
    assert sample("bounceback_breaker_failure_rate_percent", {"breaker": "prom-db"}) == 50

    def down() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(CircuitOpenError):
        Policy("sync-job", breaker=brk, attempts=4, deadline=5, clock=clock, bus=bus).call(down)
    assert (
        sample(
            "bounceback_breaker_transitions_total",
            {"breaker": "prom-db", "from_state": "closed", "to_state": "open"},
        )
        == 1
    )
    assert sample("bounceback_breaker_rejected_calls_total", {"breaker": "prom-db", "state": "open"}) == 1
    assert (
        sample(
            "bounceback_recoveries_total",
            {"operation": "sync-job", "outcome": "exhausted", "reason": "breaker"},
        )
        == 1
    )
    assert sample("bounceback_breaker_state", {"breaker": "prom-db", "state": "open"}) == 1
    assert sample("bounceback_breaker_state", {"breaker": "prom-db", "state": "closed"}) == 0
    clock.advance(5)
    brk.tick()
    assert sample("bounceback_breaker_health_checks_total", {"breaker": "prom-db", "result": "failed"}) == 1
    assert b"bounceback_breaker_in_flight_calls" in generate_latest(reg)

    exporter.close()
    assert sample("bounceback_breaker_state", {"breaker": "prom-db", "state": "open"}) is None
    assert not bus.listening  # the exporter no longer listens


def test_export_prometheus_uses_the_given_registry_and_namespace(
    setup: tuple[CollectorRegistry, EventBus, Registry, FakeClock],
) -> None:
    reg, bus, _, clock = setup
    exporter = export_prometheus(reg, namespace="myapp", bus=bus)
    brk = CircuitBreaker("prom-forced", clock=clock, bus=bus)
    brk.force_open()
    with pytest.raises(CircuitOpenError):
        brk.acquire()
    assert (
        reg.get_sample_value(
            "myapp_breaker_rejected_calls_total", {"breaker": "prom-forced", "state": "forced_open"}
        )
        == 1
    )
    assert (
        reg.get_sample_value("myapp_breaker_state", {"breaker": "prom-forced", "state": "forced_open"}) == 1
    )
    exporter.close()


def test_limits_hedges_and_faults(setup: tuple[CollectorRegistry, EventBus, Registry, FakeClock]) -> None:
    from bounceback import ConcurrencyLimiter, FaultInjector, RateLimiter, RateLimitExceeded
    from bounceback.strategies import InjectedFault

    reg, bus, named, clock = setup
    exporter = PrometheusExporter(reg, bus=bus, breakers=named)
    limiter = ConcurrencyLimiter(3, name="prom-lim", bus=bus)
    bucket = RateLimiter(2, burst=1, name="prom-rate", clock=clock, bus=bus)
    policy = Policy("prom-op", limiter=limiter, rate_limit=bucket, clock=clock, bus=bus)
    named.add_policy(policy)
    limiter.acquire()
    assert policy.call(lambda: "ok") == "ok"
    with pytest.raises(RateLimitExceeded):
        policy.call(lambda: "no token")
    chaos = FaultInjector("prom-op", enabled=True, error_rate=1.0, bus=bus)
    with pytest.raises(InjectedFault):
        chaos(lambda: None)()

    def sample(name: str, labels: dict[str, str]) -> float | None:
        return reg.get_sample_value(name, labels)

    assert sample("bounceback_limiter_in_flight_calls", {"limiter": "prom-lim", "shared": "false"}) == 1
    assert sample("bounceback_limiter_max_in_flight", {"limiter": "prom-lim", "shared": "false"}) == 3
    assert sample("bounceback_rate_limit_rate", {"limiter": "prom-rate", "shared": "false"}) == 2
    assert sample("bounceback_rate_limit_tokens", {"limiter": "prom-rate", "shared": "false"}) == 0
    rejected = {"limiter": "prom-rate", "kind": "rate", "reason": "no token"}
    assert sample("bounceback_limit_rejected_calls_total", rejected) == 1
    assert sample("bounceback_faults_injected_total", {"operation": "prom-op", "fault": "error"}) == 1
    limiter.release()
    exporter.close()


def test_shared_limits_report_the_fleet_and_say_so(
    setup: tuple[CollectorRegistry, EventBus, Registry, FakeClock],
) -> None:
    """Two processes' limiters on one store (two limiters, one MemorySharedLimits): each scrape shows the
    fleet's limit, the fleet's leases and the fleet's bucket, labelled shared."""
    from bounceback import ConcurrencyLimiter, RateLimiter
    from bounceback.core.strategies import MemorySharedLimits

    reg, bus, named, clock = setup
    store = MemorySharedLimits(clock=clock)
    exporter = PrometheusExporter(reg, bus=bus, breakers=named)
    limiter = ConcurrencyLimiter(4, name="fleet-db", bus=bus, clock=clock, shared=store)
    other = ConcurrencyLimiter(4, name="fleet-db", bus=bus, clock=clock, shared=store)  # "another process"
    bucket = RateLimiter(10, burst=5, name="fleet-api", clock=clock, bus=bus, shared=store)
    other_bucket = RateLimiter(10, burst=5, name="fleet-api", clock=clock, bus=bus, shared=store)
    # Held here: the registry holds policies weakly, and a temporary one may be collected before the scrape.
    policy = Policy("fleet-op", limiter=limiter, rate_limit=bucket, clock=clock, bus=bus)
    named.add_policy(policy)
    limiter.acquire()
    other.acquire()
    other.acquire()
    for _ in range(3):
        other_bucket.acquire()  # the other process spends the fleet's tokens; this one's bucket is untouched
    shared = {"limiter": "fleet-db", "shared": "true"}
    assert reg.get_sample_value("bounceback_limiter_in_flight_calls", shared) == 1
    assert reg.get_sample_value("bounceback_limiter_max_in_flight", shared) == 4
    assert reg.get_sample_value("bounceback_limiter_fleet_in_flight_calls", {"limiter": "fleet-db"}) == 3
    rate = {"limiter": "fleet-api", "shared": "true"}
    assert reg.get_sample_value("bounceback_rate_limit_tokens", rate) == 2  # 5 - 3, not the local 5
    assert reg.get_sample_value("bounceback_rate_limit_rate", rate) == 10
    other.release()
    other.release()
    limiter.release()
    exporter.close()
