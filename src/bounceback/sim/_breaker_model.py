"""A small stand-in circuit breaker, used only when ``bounceback.CircuitBreaker`` is not available.

It follows the same rules as the ``breaker.*`` settings describe (a count window judged by failure rate
after ``min_calls``, or ``consecutive_failures`` in a row; open for ``open_seconds``, doubling after each
failed probe up to ``open_seconds_max``; ``half_open_calls`` probes that must all succeed), and speaks the
engine's breaker port, so the simulator drives it exactly as it drives the real one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from bounceback.core._classify import Classification
from bounceback.core._time import Clock
from bounceback.errors import CircuitOpenError

__all__ = ["ModelBreaker"]


class ModelBreaker:
    """A minimal breaker on an injected clock (simulation only).

    >>> from bounceback.sim._clock import VirtualClock
    >>> from bounceback.core._classify import Classification, ErrorKind
    >>> clock = VirtualClock()
    >>> brk = ModelBreaker("svc", clock, {"consecutive_failures": 2, "open_seconds": 5, "half_open_calls": 1})
    >>> for _ in range(2):
    ...     brk.release(brk.acquire(), Classification(ErrorKind.TRANSIENT, "boom"))
    >>> brk.state_name
    'open'
    >>> clock.now = 5.0
    >>> brk.release(brk.acquire(), None)
    >>> brk.state_name
    'closed'
    """

    __slots__ = (
        "_clock",
        "_consecutive",
        "_failures",
        "_fast_successes",
        "_opened_until",
        "_outcomes",
        "_probes_left",
        "_probes_ok",
        "_reopens",
        "_state",
        "consecutive_limit",
        "failure_rate",
        "half_open_calls",
        "min_calls",
        "name",
        "open_seconds",
        "open_seconds_max",
    )

    _fast = False

    def __init__(self, name: str, clock: Clock, options: Mapping[str, Any]) -> None:
        self.name = name
        self._clock = clock
        self.failure_rate = float(options.get("failure_rate", 50.0))
        self.min_calls = int(options.get("min_calls", 10))
        window = int(options.get("window", 100))
        self.consecutive_limit = int(options.get("consecutive_failures", 0))
        self.open_seconds = float(options.get("open_seconds", 30.0))
        self.open_seconds_max = float(options.get("open_seconds_max", 300.0))
        self.half_open_calls = int(options.get("half_open_calls", 3))
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._failures = 0
        self._consecutive = 0
        self._state = "closed"
        self._opened_until = 0.0
        self._reopens = 0
        self._probes_left = 0
        self._probes_ok = 0
        self._fast_successes = 0

    @property
    def state_name(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        return self._state

    def acquire(self) -> Any:
        """Admit a call, or raise CircuitOpenError with the seconds until the next probe."""
        if self._state == "open":
            now = self._clock.monotonic()
            if now < self._opened_until:
                left = self._opened_until - now
                raise CircuitOpenError(self.name, "open", self._clock.wall() + left, left)
            self._state = "half_open"
            self._probes_left = self.half_open_calls
            self._probes_ok = 0
        if self._state == "half_open":
            if self._probes_left <= 0:
                raise CircuitOpenError(self.name, "half_open", self._clock.wall() + 1.0, 1.0)
            self._probes_left -= 1
            return True
        return False

    def release(self, permit: Any, failure: Classification | None) -> None:
        """Record an outcome; a probe's outcome closes or re-opens the breaker."""
        if permit is True:
            if failure is not None:
                self._open(reopen=True)
                return
            self._probes_ok += 1
            if self._probes_ok >= self.half_open_calls:
                self._state = "closed"
                self._reopens = 0
                self._outcomes.clear()
                self._failures = 0
                self._consecutive = 0
            return
        if self._state != "closed":
            return  # an outcome from before the breaker opened
        outcomes = self._outcomes
        if len(outcomes) == outcomes.maxlen and outcomes[0]:
            self._failures -= 1
        failed = failure is not None
        outcomes.append(failed)
        if failed:
            self._failures += 1
            self._consecutive += 1
        else:
            self._consecutive = 0
        if (self.consecutive_limit and self._consecutive >= self.consecutive_limit) or (
            len(outcomes) >= self.min_calls and self._failures * 100.0 >= self.failure_rate * len(outcomes)
        ):
            self._open(reopen=False)

    def abandon(self, permit: Any) -> None:
        """Give a probe permit back without an outcome."""
        if permit is True:
            self._probes_left += 1

    def _open(self, reopen: bool) -> None:
        self._reopens = self._reopens + 1 if reopen else 0
        grown = self.open_seconds * 2.0 ** min(self._reopens, 64)
        self._opened_until = self._clock.monotonic() + min(grown, self.open_seconds_max, math.inf)
        self._state = "open"
        self._outcomes.clear()
        self._failures = 0
        self._consecutive = 0
