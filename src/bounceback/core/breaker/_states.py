"""The states of a circuit breaker and the transitions between them that may ever happen."""

from __future__ import annotations

import enum

__all__ = ["ALLOWED_TRANSITIONS", "AUTOMATIC_TRANSITIONS", "BreakerState"]


class BreakerState(enum.StrEnum):
    """The states of a circuit breaker. Values are plain strings (``BreakerState.OPEN == "open"``).

    ``CLOSED``: calls flow and are counted. ``OPEN``: calls are refused until the open time ends.
    ``HALF_OPEN``: a few probe calls test the dependency. ``FORCED_OPEN``: refused until a person closes
    it. ``DISABLED``: every call passes and nothing is counted.

    >>> BreakerState("half_open") is BreakerState.HALF_OPEN
    True
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


_C = BreakerState.CLOSED
_O = BreakerState.OPEN
_H = BreakerState.HALF_OPEN
_F = BreakerState.FORCED_OPEN
_D = BreakerState.DISABLED

AUTOMATIC_TRANSITIONS = frozenset({(_C, _O), (_O, _H), (_H, _O), (_H, _C)})
"""The transitions a breaker makes by itself: trip, open time over (or health check passed), probe failed,
probes succeeded."""

ALLOWED_TRANSITIONS = AUTOMATIC_TRANSITIONS | frozenset(
    {
        (_C, _F),
        (_C, _D),
        (_O, _C),
        (_O, _F),
        (_O, _D),
        (_H, _F),
        (_H, _D),
        (_F, _C),
        (_F, _D),
        (_D, _C),
        (_D, _F),
    }
)
"""Every transition a breaker may make; the rest (``CLOSED → HALF_OPEN``, leaving ``FORCED_OPEN`` or
``DISABLED`` except by hand, ...) never happen."""
