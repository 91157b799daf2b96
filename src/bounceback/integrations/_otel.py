"""OpenTelemetry metrics for recovery and circuit breakers (needs the ``otel`` extra).

The same measurements as the Prometheus exporter, as OpenTelemetry instruments: counters and a histogram
fed by events, and observable gauges that read every named breaker when the SDK collects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from bounceback.core._events import (
    AttemptFailed,
    BreakerStateChanged,
    CallRejected,
    Event,
    EventBus,
    HealthChecked,
    RecoveryExhausted,
    RecoverySucceeded,
    RetryScheduled,
    StoreUnavailable,
    default_bus,
)
from bounceback.core._registry import Registry
from bounceback.core._registry import registry as default_registry
from bounceback.core.breaker._core import BreakerState

__all__ = ["OpenTelemetryExporter", "export_otel"]


class OpenTelemetryExporter:
    """Records bounceback events with a meter from ``meter_provider`` (default: the global provider).

    Instruments (prefix ``bounceback``): counters ``bounceback.attempt.failures`` {operation, kind},
    ``bounceback.retries`` {operation, reason}, ``bounceback.recoveries`` {operation, outcome, reason},
    ``bounceback.breaker.transitions`` {breaker, from_state, to_state}, ``bounceback.breaker.rejected``
    {breaker, state}, ``bounceback.breaker.health_checks`` {breaker, result}, ``bounceback.store.errors``
    {breaker, store}; histogram ``bounceback.recovery.duration`` (s) {operation, outcome}; observable
    gauges ``bounceback.breaker.state`` {breaker, state}, ``bounceback.breaker.failure_rate`` (%),
    ``bounceback.breaker.slow_call_rate`` (%), ``bounceback.breaker.window_calls``,
    ``bounceback.breaker.in_flight`` {breaker}.

    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> exporter = OpenTelemetryExporter(MeterProvider())
    >>> exporter.close()
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        prefix: str = "bounceback",
        bus: EventBus | None = None,
        breakers: Registry | None = None,
    ) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("bounceback")
        p = prefix
        self._breakers = breakers if breakers is not None else default_registry
        self.attempt_failures = meter.create_counter(
            f"{p}.attempt.failures", "{attempt}", "Attempts that failed."
        )
        self.retries = meter.create_counter(f"{p}.retries", "{retry}", "Retries scheduled.")
        self.recoveries = meter.create_counter(f"{p}.recoveries", "{recovery}", "Recoveries that ended.")
        self.recovery_duration = meter.create_histogram(
            f"{p}.recovery.duration", "s", "Time from the first attempt to the end of recovery."
        )
        self.transitions = meter.create_counter(
            f"{p}.breaker.transitions", "{transition}", "Breaker state changes."
        )
        self.rejected = meter.create_counter(f"{p}.breaker.rejected", "{call}", "Calls a breaker refused.")
        self.health_checks = meter.create_counter(
            f"{p}.breaker.health_checks", "{check}", "Health checks run."
        )
        self.store_errors = meter.create_counter(
            f"{p}.store.errors", "{error}", "Times a breaker lost its store."
        )
        meter.create_observable_gauge(
            f"{p}.breaker.state", [self._observe_state], "1", "1 for the current state."
        )
        for field, unit, doc in (
            ("failure_rate", "%", "Failure rate in the window."),
            ("slow_call_rate", "%", "Slow-call rate in the window."),
            ("calls", "{call}", "Calls in the window."),
            ("in_flight", "{call}", "Calls running (with max_in_flight)."),
        ):
            name = "window_calls" if field == "calls" else field
            meter.create_observable_gauge(f"{p}.breaker.{name}", [self._observer(field)], unit, doc)
        self._unsubscribe = (bus if bus is not None else default_bus).subscribe(self.handle)
        self._closed = False

    def handle(self, event: Event) -> None:
        """Record one event (called by the bus)."""
        if isinstance(event, AttemptFailed):
            self.attempt_failures.add(
                1, {"operation": event.operation, "kind": event.classification.kind.value}
            )
        elif isinstance(event, RetryScheduled):
            self.retries.add(1, {"operation": event.operation, "reason": event.reason})
        elif isinstance(event, RecoverySucceeded):
            self.recoveries.add(1, {"operation": event.operation, "outcome": "succeeded", "reason": ""})
            self.recovery_duration.record(
                event.elapsed, {"operation": event.operation, "outcome": "succeeded"}
            )
        elif isinstance(event, RecoveryExhausted):
            self.recoveries.add(
                1, {"operation": event.operation, "outcome": "exhausted", "reason": event.reason}
            )
            self.recovery_duration.record(
                event.elapsed, {"operation": event.operation, "outcome": "exhausted"}
            )
        elif isinstance(event, BreakerStateChanged):
            attrs = {"breaker": event.operation, "from_state": event.old_state, "to_state": event.new_state}
            self.transitions.add(1, attrs)
        elif isinstance(event, CallRejected):
            self.rejected.add(1, {"breaker": event.operation, "state": event.state})
        elif isinstance(event, HealthChecked):
            self.health_checks.add(
                1, {"breaker": event.operation, "result": "passed" if event.ok else "failed"}
            )
        elif isinstance(event, StoreUnavailable):
            self.store_errors.add(1, {"breaker": event.operation, "store": event.store})

    def _snapshots(self) -> list[Any]:
        if self._closed:
            return []
        return [brk.metrics() for _, brk in sorted(self._breakers.breakers().items())]

    # The SDK passes CallbackOptions (a timeout hint); reading snapshots is quick, so it is not needed.
    def _observe_state(self, options: CallbackOptions) -> Iterable[Observation]:  # noqa: ARG002
        for snap in self._snapshots():
            for s in BreakerState:
                yield Observation(1 if snap.state == s.value else 0, {"breaker": snap.name, "state": s.value})

    def _observer(self, field: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:  # noqa: ARG001
            for snap in self._snapshots():
                yield Observation(getattr(snap, field), {"breaker": snap.name})

        return observe

    def close(self) -> None:
        """Stop listening; the gauges report nothing from now on (instruments cannot be removed)."""
        self._unsubscribe()
        self._closed = True


def export_otel(
    meter_provider: MeterProvider | None = None, *, prefix: str = "bounceback", bus: EventBus | None = None
) -> OpenTelemetryExporter:
    """Start recording bounceback metrics with OpenTelemetry; ``.close()`` stops."""
    return OpenTelemetryExporter(meter_provider, prefix=prefix, bus=bus)
