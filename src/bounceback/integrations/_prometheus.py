"""Prometheus metrics for recovery and circuit breakers (needs the ``prometheus`` extra: prometheus-client).

Counters and histograms come from events (attempts failed, retries, recoveries, breaker transitions,
rejections, health checks); the breakers' live state and window (state, failure rate, calls in the
window, calls in flight) is read from the registry of named breakers when Prometheus scrapes, so a
breaker shows up with its state even before anything happened to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bounceback.core._events import (
    AttemptFailed,
    AttemptHedged,
    BreakerStateChanged,
    CallRejected,
    Event,
    EventBus,
    FaultInjected,
    HealthChecked,
    LimitRejected,
    RecoveryExhausted,
    RecoverySucceeded,
    RetryScheduled,
    StoreRecovered,
    StoreUnavailable,
    default_bus,
)
from bounceback.core._registry import Registry
from bounceback.core._registry import registry as default_registry
from bounceback.core.breaker._core import BreakerState

__all__ = ["PrometheusExporter", "export_prometheus"]

_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class PrometheusExporter:
    """Turns bounceback events into Prometheus metrics in ``registry`` (default: the global one).

    Metric names start with ``namespace`` (``bounceback``): ``bounceback_attempt_failures_total{operation,
    kind}``, ``bounceback_retries_total{operation, reason}``, ``bounceback_recoveries_total{operation,
    outcome, reason}``, ``bounceback_recovery_seconds{operation, outcome}``,
    ``bounceback_breaker_transitions_total{breaker, from_state, to_state}``,
    ``bounceback_breaker_rejected_calls_total{breaker, state}``,
    ``bounceback_breaker_health_checks_total{breaker, result}``, ``bounceback_store_errors_total{breaker,
    store}``; scraped live: ``bounceback_breaker_state{breaker, state}`` (1 for the current state),
    ``bounceback_breaker_failure_rate_percent``, ``bounceback_breaker_slow_call_rate_percent``,
    ``bounceback_breaker_window_calls``, ``bounceback_breaker_in_flight_calls``,
    ``bounceback_breaker_store_available`` (all ``{breaker}``). Limits, hedging and fault injection:
    ``bounceback_limit_rejected_calls_total{limiter, kind, reason}``, ``bounceback_hedges_total{operation}``,
    ``bounceback_faults_injected_total{operation, fault}``; scraped live from the limiters of named policies:
    ``bounceback_limiter_in_flight_calls``, ``bounceback_limiter_waiting_calls``,
    ``bounceback_limiter_max_in_flight`` and ``bounceback_rate_limit_tokens``,
    ``bounceback_rate_limit_rate`` (``{limiter, shared}``), ``bounceback_limiter_fleet_in_flight_calls``
    (``{limiter}``).

    ``shared`` is ``"true"`` for a limit held in a store for several processes (``shared=``). Then
    ``max_in_flight`` and ``rate`` are the fleet's limit, reported alike by every process (aggregate them
    with ``max``, not ``sum``); ``in_flight_calls`` / ``waiting_calls`` stay this process's (their ``sum``
    over the fleet is the fleet's); ``fleet_in_flight_calls`` is the store's count of live leases, and
    ``rate_limit_tokens`` the tokens left in the fleet's bucket, both read from the store at scrape time
    and left out while it cannot be reached (never this process's unused local bucket).

    >>> from prometheus_client import CollectorRegistry
    >>> exporter = PrometheusExporter(CollectorRegistry())
    >>> exporter.close()
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "bounceback",
        bus: EventBus | None = None,
        breakers: Registry | None = None,
    ) -> None:
        reg = registry if registry is not None else REGISTRY
        self.registry = reg
        ns = namespace

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(f"{ns}_{name}", doc, labels, registry=reg)

        self.attempt_failures = counter(
            "attempt_failures", "Attempts that failed, by error kind.", ["operation", "kind"]
        )
        self.retries = counter(
            "retries", "Retries scheduled, by why the wait was chosen.", ["operation", "reason"]
        )
        self.recoveries = counter(
            "recoveries", "Recoveries that ended, succeeded or exhausted.", ["operation", "outcome", "reason"]
        )
        self.recovery_seconds = Histogram(
            f"{ns}_recovery_seconds",
            "Time from the first failed attempt's start to the end of recovery.",
            ["operation", "outcome"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.transitions = counter(
            "breaker_transitions", "Breaker state changes.", ["breaker", "from_state", "to_state"]
        )
        self.rejected = counter("breaker_rejected_calls", "Calls a breaker refused.", ["breaker", "state"])
        self.health_checks = counter(
            "breaker_health_checks", "Health checks a breaker ran.", ["breaker", "result"]
        )
        self.store_errors = counter(
            "store_errors", "Times a breaker lost its shared store.", ["breaker", "store"]
        )
        self.limit_rejected = counter(
            "limit_rejected_calls",
            "Calls a concurrency or rate limiter refused.",
            ["limiter", "kind", "reason"],
        )
        self.hedges = counter("hedges", "Hedged attempts started beside slow ones.", ["operation"])
        self.faults = counter("faults_injected", "Faults injected by chaos.", ["operation", "fault"])
        named = breakers if breakers is not None else default_registry
        self._collector = _BreakerCollector(ns, named)
        reg.register(self._collector)
        self._limits = _LimitCollector(ns, named)
        reg.register(self._limits)
        self._unsubscribe = (bus if bus is not None else default_bus).subscribe(self.handle)

    def handle(self, event: Event) -> None:
        """Count one event (called by the bus)."""
        if isinstance(event, AttemptFailed):
            self.attempt_failures.labels(event.operation, event.classification.kind.value).inc()
        elif isinstance(event, RetryScheduled):
            self.retries.labels(event.operation, event.reason).inc()
        elif isinstance(event, RecoverySucceeded):
            self.recoveries.labels(event.operation, "succeeded", "").inc()
            self.recovery_seconds.labels(event.operation, "succeeded").observe(event.elapsed)
        elif isinstance(event, RecoveryExhausted):
            self.recoveries.labels(event.operation, "exhausted", event.reason).inc()
            self.recovery_seconds.labels(event.operation, "exhausted").observe(event.elapsed)
        elif isinstance(event, BreakerStateChanged):
            self.transitions.labels(event.operation, event.old_state, event.new_state).inc()
        elif isinstance(event, CallRejected):
            self.rejected.labels(event.operation, event.state).inc()
        elif isinstance(event, HealthChecked):
            self.health_checks.labels(event.operation, "passed" if event.ok else "failed").inc()
        elif isinstance(event, StoreUnavailable):
            self.store_errors.labels(event.operation, event.store).inc()
        elif isinstance(event, StoreRecovered):
            pass  # the live gauge bounceback_breaker_store_available shows the recovery
        elif isinstance(event, LimitRejected):
            self.limit_rejected.labels(event.operation, event.limiter, event.reason).inc()
        elif isinstance(event, AttemptHedged):
            self.hedges.labels(event.operation).inc()
        elif isinstance(event, FaultInjected):
            self.faults.labels(event.operation, event.fault).inc()

    def close(self) -> None:
        """Stop listening and remove this exporter's metrics from the registry."""
        self._unsubscribe()
        for metric in (
            self.attempt_failures,
            self.retries,
            self.recoveries,
            self.recovery_seconds,
            self.transitions,
            self.rejected,
            self.health_checks,
            self.store_errors,
            self.limit_rejected,
            self.hedges,
            self.faults,
            self._collector,
            self._limits,
        ):
            with contextlib.suppress(KeyError):
                self.registry.unregister(metric)


class _BreakerCollector(Collector):
    """Reads every named breaker's snapshot at scrape time."""

    def __init__(self, namespace: str, breakers: Registry) -> None:
        self.namespace = namespace
        self.breakers = breakers

    def collect(self) -> Iterator[Any]:
        ns = self.namespace
        state = GaugeMetricFamily(
            f"{ns}_breaker_state", "1 for the breaker's current state.", labels=["breaker", "state"]
        )
        gauges = {
            "failure_rate": GaugeMetricFamily(
                f"{ns}_breaker_failure_rate_percent", "Failure rate in the window.", labels=["breaker"]
            ),
            "slow_call_rate": GaugeMetricFamily(
                f"{ns}_breaker_slow_call_rate_percent", "Slow-call rate in the window.", labels=["breaker"]
            ),
            "calls": GaugeMetricFamily(
                f"{ns}_breaker_window_calls", "Calls in the window.", labels=["breaker"]
            ),
            "in_flight": GaugeMetricFamily(
                f"{ns}_breaker_in_flight_calls", "Calls running (with max_in_flight).", labels=["breaker"]
            ),
        }
        available = GaugeMetricFamily(
            f"{ns}_breaker_store_available", "1 while the breaker reaches its store.", labels=["breaker"]
        )
        for name, brk in sorted(self.breakers.breakers().items()):
            snap = brk.metrics()
            for s in BreakerState:
                state.add_metric([name, s.value], 1.0 if snap.state == s.value else 0.0)
            for field, family in gauges.items():
                family.add_metric([name], float(getattr(snap, field)))
            available.add_metric([name], 1.0 if snap.store_available else 0.0)
        yield state
        yield from gauges.values()
        yield available

    def describe(self) -> Iterator[Any]:
        # Describing by collecting would snapshot every breaker at registration; names are enough.
        return iter(())


class _LimitCollector(Collector):
    """Reads the concurrency and rate limiters of every named policy at scrape time (each limiter once)."""

    def __init__(self, namespace: str, named: Registry) -> None:
        self.namespace = namespace
        self.named = named

    def collect(self) -> Iterator[Any]:
        ns = self.namespace

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("limiter", "shared")) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{ns}_{name}", doc, labels=list(labels))

        in_flight = gauge("limiter_in_flight_calls", "Calls of this process holding a concurrency slot.")
        waiting = gauge("limiter_waiting_calls", "Calls of this process queued for a concurrency slot.")
        size = gauge("limiter_max_in_flight", "The concurrency limit (the fleet's, when shared).")
        fleet = gauge(
            "limiter_fleet_in_flight_calls",
            "Calls of every process holding a lease of a shared concurrency limit (read from the store).",
            ("limiter",),
        )
        tokens = gauge(
            "rate_limit_tokens", "Tokens in the bucket (the fleet's, when shared; negative: reserved)."
        )
        rate = gauge("rate_limit_rate", "The rate limit, calls per second (the fleet's, when shared).")
        seen: set[int] = set()
        for _, policy in sorted(self.named.policies().items()):
            limiter = getattr(policy, "limiter", None)
            if limiter is not None and id(limiter) not in seen:
                seen.add(id(limiter))
                snap = limiter.snapshot()
                labels = [limiter.name, "true" if snap["shared"] else "false"]
                in_flight.add_metric(labels, float(snap["in_flight"]))
                waiting.add_metric(labels, float(snap["waiting"]))
                size.add_metric(labels, float(snap["max_in_flight"]))
                if snap.get("fleet_in_flight") is not None:
                    fleet.add_metric([limiter.name], float(snap["fleet_in_flight"]))
            bucket = getattr(policy, "rate_limit", None)
            if bucket is not None and id(bucket) not in seen:
                seen.add(id(bucket))
                snap = bucket.snapshot()
                labels = [bucket.name, "true" if snap["shared"] else "false"]
                left = snap["fleet_tokens"] if snap["shared"] else bucket.available()
                if left is not None:  # a shared bucket whose store is away: nothing rather than a guess
                    tokens.add_metric(labels, float(left))
                rate.add_metric(labels, bucket.rate)
        yield from (in_flight, waiting, size, fleet, tokens, rate)

    def describe(self) -> Iterator[Any]:
        return iter(())


def export_prometheus(
    registry: CollectorRegistry | None = None, *, namespace: str = "bounceback", bus: EventBus | None = None
) -> PrometheusExporter:
    """Start exporting to ``registry`` (default: prometheus_client's global one); ``.close()`` stops.

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> exporter = export_prometheus(CollectorRegistry(), namespace="docs")
    >>> b"# TYPE docs_breaker_rejected_calls_total counter" in generate_latest(exporter.registry)
    True
    >>> exporter.close()
    """
    return PrometheusExporter(registry, namespace=namespace, bus=bus)
