"""The circuit breaker: its configuration, state machine, windows, store port (with batching), health checks, controls and metrics."""

from __future__ import annotations

from bounceback.core.breaker._batched import BatchedBreakerStore, BatchingStore, Run, record_runs
from bounceback.core.breaker._breaker import CircuitBreaker
from bounceback.core.breaker._config import (
    SETTINGS_KEYS,
    STORE_KEYS,
    BreakerConfig,
    build_config,
    trip_reason,
)
from bounceback.core.breaker._metrics import NO_CHECKS, BreakerMetrics, HealthStats, Transition
from bounceback.core.breaker._states import ALLOWED_TRANSITIONS, AUTOMATIC_TRANSITIONS, BreakerState
from bounceback.core.breaker._store import (
    NO_OUTCOME,
    BreakerStore,
    MemoryBreakerStore,
    SharedState,
    WindowSpec,
)
from bounceback.core.breaker._window import (
    FAILED,
    OK,
    SLOW,
    CountWindow,
    TimeWindow,
    WindowCounts,
    time_buckets,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "AUTOMATIC_TRANSITIONS",
    "BatchedBreakerStore",
    "BatchingStore",
    "BreakerConfig",
    "BreakerMetrics",
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "CountWindow",
    "FAILED",
    "HealthStats",
    "MemoryBreakerStore",
    "NO_CHECKS",
    "NO_OUTCOME",
    "OK",
    "Run",
    "SETTINGS_KEYS",
    "SLOW",
    "STORE_KEYS",
    "SharedState",
    "TimeWindow",
    "Transition",
    "WindowCounts",
    "WindowSpec",
    "build_config",
    "record_runs",
    "time_buckets",
    "trip_reason",
]
