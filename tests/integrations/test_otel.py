"""The OpenTelemetry exporter against the real SDK, read back with InMemoryMetricReader."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from bounceback import CircuitBreaker, CircuitOpenError, Policy
from bounceback.events import EventBus, Registry
from bounceback.integrations import OpenTelemetryExporter
from bounceback.testing import FakeClock


def points(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, Any], ...]], Any]:
    """Every data point as {(metric name, sorted attributes): value, or count for a histogram}."""
    out: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for dp in metric.data.data_points:
                    key = (metric.name, tuple(sorted(dp.attributes.items())))
                    out[key] = dp.value if hasattr(dp, "value") else dp.count
    return out


def test_recovery_and_breaker_metrics_reach_the_sdk() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    bus, breakers, clock = EventBus(), Registry(), FakeClock()
    exporter = OpenTelemetryExporter(provider, bus=bus, breakers=breakers)
    brk = CircuitBreaker("otel-db", window=3, min_calls=3, open_seconds=10, clock=clock, bus=bus)
    breakers.add_breaker(brk)
    answers = [TimeoutError("slow"), "row"]

    def fetch() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert Policy("fetch", breaker=brk, attempts=3, clock=clock, bus=bus).call(fetch) == "row"

    def down() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(CircuitOpenError):
        Policy("job", breaker=brk, attempts=4, deadline=5, clock=clock, bus=bus).call(down)

    got = points(reader)
    assert got[("bounceback.attempt.failures", (("kind", "transient"), ("operation", "fetch")))] == 1
    assert got[("bounceback.retries", (("operation", "fetch"), ("reason", "backoff")))] == 1
    assert (
        got[("bounceback.recoveries", (("operation", "fetch"), ("outcome", "succeeded"), ("reason", "")))]
        == 1
    )
    assert got[("bounceback.recovery.duration", (("operation", "fetch"), ("outcome", "succeeded")))] == 1
    assert (
        got[
            ("bounceback.recoveries", (("operation", "job"), ("outcome", "exhausted"), ("reason", "breaker")))
        ]
        == 1
    )
    opened = (
        "bounceback.breaker.transitions",
        (("breaker", "otel-db"), ("from_state", "closed"), ("to_state", "open")),
    )
    assert got[opened] == 1
    assert got[("bounceback.breaker.rejected", (("breaker", "otel-db"), ("state", "open")))] == 1
    assert got[("bounceback.breaker.state", (("breaker", "otel-db"), ("state", "open")))] == 1
    assert got[("bounceback.breaker.state", (("breaker", "otel-db"), ("state", "closed")))] == 0
    assert got[("bounceback.breaker.window_calls", (("breaker", "otel-db"),))] == 3
    assert got[("bounceback.breaker.failure_rate", (("breaker", "otel-db"),))] == pytest.approx(200 / 3)

    exporter.close()
    assert not bus.listening
    provider.shutdown()
