"""The circuit breaker: its configuration, state machine, windows, store port (with batching), health checks, controls and metrics.

A :class:`CircuitBreaker` (``_breaker``) is composed of parts it owns; they talk through methods and a
few callbacks, never through each other's private attributes, and each is made only when it is needed:

* the **call path** stays on the breaker: ``acquire`` / ``release`` / ``abandon`` (the retry engine's
  port), ``state``, the decorator, and a read-only copy of what they read (state, epoch, open-until,
  flags, config, refusal tally);
* the **state machine** (``_machine.StateMachine``) decides: transitions as compare-and-sets through the
  store, half-open probe permits, the bookkeeping of failures under one short lock, manual control, the
  metrics snapshot; it publishes the copy the call path reads through one callback;
* the **store** (``_store``): the window and the shared state, the breaker's own ``MemoryBreakerStore``
  (made at the first outcome it records) or, for a store given to it, a **store link**
  (``_link.StoreLink``) that falls back to local state while that store fails;
* the **limits** (``_control.Limits``): the layers a config is built from (settings source, settings
  applied, arguments); a breaker left at the defaults has none and shares one default ``BreakerConfig``;
* the **health checker** (``_health.HealthChecker``): the health check and the timers that run while
  open; made when a health check is given or a timer is first needed;
* the **history** (``_metrics.History``): the last transitions, opens and refusals; made at the first;
* the **forms** (``_forms``): ``call``, ``acall``, ``with`` blocks and the async decorator, functions of
  the breaker's public port.

Successes on the fast path are counted exactly without a lock (a ``Tally``), refusals likewise; a
breaker kept in memory costs under 1 KB and is made in a few microseconds.
"""

from __future__ import annotations

from bounceback.core.breaker._batched import BatchedBreakerStore
from bounceback.core.breaker._breaker import CircuitBreaker
from bounceback.core.breaker._config import (
    SETTINGS_KEYS,
    STORE_KEYS,
    BreakerConfig,
    build_config,
    trip_reason,
)
from bounceback.core.breaker._control import Limits
from bounceback.core.breaker._core import EVENTS, Change, is_warm, spec_of
from bounceback.core.breaker._forms import acall, call, decorate, enter, leave
from bounceback.core.breaker._health import HealthChecker
from bounceback.core.breaker._link import StoreLink
from bounceback.core.breaker._machine import COUNTED, PROBE, UNUSED, Publish, StateMachine
from bounceback.core.breaker._metrics import NO_CHECKS, BreakerMetrics, HealthStats, History, Transition
from bounceback.core.breaker._pending import (
    MAX_RUNS,
    BatchingStore,
    Deliver,
    Key,
    Run,
    StateFeed,
    WatchingStore,
    record_runs,
    totals,
)
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
    "COUNTED",
    "Change",
    "CircuitBreaker",
    "CountWindow",
    "Deliver",
    "EVENTS",
    "FAILED",
    "HealthChecker",
    "HealthStats",
    "History",
    "Key",
    "Limits",
    "MAX_RUNS",
    "MemoryBreakerStore",
    "NO_CHECKS",
    "NO_OUTCOME",
    "OK",
    "PROBE",
    "Publish",
    "Run",
    "SETTINGS_KEYS",
    "SLOW",
    "STORE_KEYS",
    "SharedState",
    "StateFeed",
    "StateMachine",
    "StoreLink",
    "TimeWindow",
    "Transition",
    "UNUSED",
    "WatchingStore",
    "WindowCounts",
    "WindowSpec",
    "acall",
    "build_config",
    "call",
    "decorate",
    "enter",
    "is_warm",
    "leave",
    "record_runs",
    "spec_of",
    "time_buckets",
    "totals",
    "trip_reason",
]
