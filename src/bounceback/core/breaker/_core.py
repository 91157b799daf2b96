"""The rules of a circuit breaker's state machine that need no breaker: events, warmth, window shapes.

The states and the transitions allowed between them live in ``_states``; the breaker
(:class:`~bounceback.core.breaker._breaker.CircuitBreaker`) applies transitions. This module holds the
pure pieces it uses: which event class announces a new state, when a success can no longer trip the
breaker (so successes may skip the window for a while), and the one shared :class:`WindowSpec` per
window shape (immutable, so every breaker with the same window holds the same object).
"""

from __future__ import annotations

import functools

from bounceback.core._events import BreakerClosed, BreakerHalfOpened, BreakerOpened, BreakerStateChanged
from bounceback.core.breaker._config import BreakerConfig
from bounceback.core.breaker._states import ALLOWED_TRANSITIONS, AUTOMATIC_TRANSITIONS, BreakerState
from bounceback.core.breaker._store import WindowSpec
from bounceback.core.breaker._window import WindowCounts

__all__ = [
    "ALLOWED_TRANSITIONS",
    "AUTOMATIC_TRANSITIONS",
    "BreakerState",
    "Change",
    "EVENTS",
    "is_warm",
    "spec_of",
]

EVENTS: dict[BreakerState, type[BreakerStateChanged]] = {
    BreakerState.CLOSED: BreakerClosed,
    BreakerState.OPEN: BreakerOpened,
    BreakerState.HALF_OPEN: BreakerHalfOpened,
    BreakerState.FORCED_OPEN: BreakerOpened,
    BreakerState.DISABLED: BreakerStateChanged,
}
"""The event announcing each new state."""

Change = tuple[BreakerState, BreakerStateChanged | None]
"""What a transition hands on, to be acted on after the breaker's lock is released: the new state and
its event (None when nobody listens)."""


def is_warm(cfg: BreakerConfig, counts: WindowCounts) -> bool:
    """True when a success can no longer trip the breaker (so successes may skip the window for now).

    >>> is_warm(BreakerConfig(min_calls=10), WindowCounts(calls=3, failures=1))
    False
    """
    return counts.calls >= cfg.min_calls_in_window or not (counts.failures or counts.slow)


@functools.lru_cache(maxsize=256)
def _spec(kind: str, size: float) -> WindowSpec:
    return WindowSpec(kind, size)


def spec_of(cfg: BreakerConfig) -> WindowSpec:
    """The window shape of ``cfg``, one shared object per shape.

    >>> spec_of(BreakerConfig()) is spec_of(BreakerConfig())
    True
    """
    return _spec(cfg.window_type, cfg.window)
