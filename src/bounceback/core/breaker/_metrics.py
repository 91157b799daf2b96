"""The read-only snapshot of a circuit breaker, for status output, dashboards and metrics exporters."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from bounceback.core.breaker._window import WindowCounts

__all__ = ["BreakerMetrics", "HealthStats", "History", "NO_CHECKS", "Transition"]


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change: wall time ``at``, ``old`` and ``new`` state values, and why."""

    at: float
    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class HealthStats:
    """What the breaker's own health check has done so far."""

    checks: int = 0
    failures: int = 0
    last_at: float | None = None
    """Wall time of the last check."""
    last_ok: bool | None = None
    last_error: str | None = None
    last_duration: float | None = None


class History:
    """A breaker's part that remembers what happened: its last transitions, opens and refusals.

    Made at the breaker's first transition or refusal (a breaker that never changed state has none).
    The breaker writes it under its own lock.

    >>> history = History()
    >>> history.add(Transition(0.0, "closed", "open", "a probe failed"))
    >>> history.opens, len(history.transitions)
    (1, 1)
    """

    __slots__ = ("opens", "rejected", "transitions")

    def __init__(self) -> None:
        self.transitions: deque[Transition] = deque(maxlen=10)
        self.opens = 0
        self.rejected = 0

    def add(self, transition: Transition) -> None:
        """Remember ``transition`` (the last ten are kept); count it when it opened the breaker."""
        self.transitions.append(transition)
        if transition.new == "open":
            self.opens += 1

    def clear_counts(self) -> None:
        """Zero the counts (``breaker.reset()``); the transitions stay, for the record."""
        self.opens = 0
        self.rejected = 0


NO_CHECKS = HealthStats()
"""The stats of a breaker whose health check never ran (immutable, so shared by every such breaker)."""


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """A snapshot of a breaker (``breaker.metrics()``).

    Counts and rates cover the breaker's window (rates in percent, 0.0 while the window is empty).
    ``time_in_state`` is in seconds; ``retry_at`` is the wall time of the next probe while open.

    >>> from bounceback import CircuitBreaker
    >>> m = CircuitBreaker("docs-metrics").metrics()
    >>> m.state, m.calls, m.failure_rate
    ('closed', 0, 0.0)
    """

    name: str
    state: str
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    consecutive_failures: int
    rejected: int
    """Calls refused since the breaker was made (or reset)."""
    in_flight: int
    """Calls running now, counted only while ``max_in_flight`` is set."""
    probes_in_flight: int
    opens: int
    """Times the breaker opened since it was made (or reset)."""
    time_in_state: float
    retry_at: float | None
    retry_after: float | None
    last_transitions: tuple[Transition, ...]
    health: HealthStats
    store: str
    store_available: bool

    @classmethod
    def of(
        cls,
        name: str,
        state: str,
        counts: WindowCounts,
        history: History | None,
        running: tuple[int, int],
        time_in_state: float,
        retry: tuple[float | None, float | None],
        health: HealthStats,
        store: tuple[str, bool],
    ) -> BreakerMetrics:
        """The snapshot of a breaker from its window ``counts``, its ``history``, the calls and probes
        ``running``, the ``retry`` (wall time, seconds left) while open, and its ``store`` (name, available)."""
        return cls(
            name=name,
            state=state,
            calls=counts.calls,
            failures=counts.failures,
            slow_calls=counts.slow,
            failure_rate=counts.failure_rate,
            slow_call_rate=counts.slow_call_rate,
            consecutive_failures=counts.consecutive_failures,
            rejected=history.rejected if history is not None else 0,
            in_flight=running[0],
            probes_in_flight=running[1],
            opens=history.opens if history is not None else 0,
            time_in_state=time_in_state,
            retry_at=retry[0],
            retry_after=retry[1],
            last_transitions=tuple(history.transitions) if history is not None else (),
            health=health,
            store=store[0],
            store_available=store[1],
        )
