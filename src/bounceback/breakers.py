"""Circuit breakers: the breaker, its configuration, state and metrics, and the store port through which
processes share one breaker's state (memory here; SQLite and Redis in :mod:`bounceback.stores`).
"""

from __future__ import annotations

from bounceback.core.breaker._breaker import BreakerMetrics, BreakerState, CircuitBreaker
from bounceback.core.breaker._config import BreakerConfig
from bounceback.core.breaker._store import (
    BreakerStore,
    KeyRecord,
    MemoryBreakerStore,
    SharedState,
    WindowSpec,
)
from bounceback.core.breaker._window import WindowCounts

__all__ = [
    "BreakerConfig",
    "BreakerMetrics",
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "KeyRecord",
    "MemoryBreakerStore",
    "SharedState",
    "WindowCounts",
    "WindowSpec",
]
