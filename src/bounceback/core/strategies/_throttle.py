"""Adaptive client-side throttling: refuse locally, with a probability, what the service would refuse anyway.

The rule is the one from Google's SRE book (chapter "Handling Overload"): a client counts, over a sliding
window, the ``requests`` it tried and the ``accepts``, the requests the service answered rather than turned
away. While the service accepts everything, ``requests == accepts`` and nothing is refused. When it starts
to shed load, accepts fall behind, and each new request is refused locally, without reaching the service,
with probability ``max(0, (requests - k * accepts) / (requests + 1))``. With ``k = 2`` the client sends
about twice what the service accepts: enough to find out quickly when it has room again, little enough
that an overloaded service is not also buried under requests it will only reject.

Refused requests count as requests (so a client that is refused more backs off more) but never reach the
service. A :class:`~bounceback.Policy` given ``throttle=`` asks before every attempt; a refusal ends the call
at once with :class:`~bounceback.errors.RequestThrottled` (retrying it would only be refused again, and would
add to ``requests``).
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any

from bounceback.core._time import SYSTEM_CLOCK, Clock, to_seconds
from bounceback.core.classify._rules import Classification, ErrorKind
from bounceback.errors import ConfigError, RequestThrottled

__all__ = ["AdaptiveThrottle", "is_accepted"]

_SLICES = 12


def is_accepted(failure: Classification | None) -> bool:
    """Did the service accept the request? Yes unless it failed as transient or throttled (overload,
    unavailable, timed out): a permanent error is an answer from a service that had room to give it."""
    return failure is None or failure.kind is ErrorKind.PERMANENT


class AdaptiveThrottle:
    """Client-side adaptive throttling for one dependency; thread-safe. See the module text for the rule.

    ``k`` is how many requests per accepted one the client still sends (2: twice what the service takes;
    lower is more aggressive), ``window`` the seconds of history, ``rng`` and ``clock`` are injectable for
    tests. The SRE book keeps two minutes; 30 s is the default here because after a full outage the refusal
    probability falls only about one window at a time (``p`` becomes ``k*p - (k-1)`` per window), and the
    simulator shows a 2-minute memory keeping a recovered service starved for several minutes.

    >>> from bounceback.testing import FakeClock
    >>> clock = FakeClock()
    >>> throttle = AdaptiveThrottle(k=2, window=30, clock=clock, rng=random.Random(1))
    >>> for _ in range(100):
    ...     throttle.record(throttle.admit(), accepted=True)
    >>> throttle.refusal_probability()                         # all accepted: nothing is shed
    0.0
    >>> clock.advance(30)
    >>> for _ in range(100):
    ...     throttle.record(throttle.admit(), accepted=False)  # the service turns everything away
    >>> round(throttle.refusal_probability(), 2)
    0.99
    >>> clock.advance(30)                                       # a window later, the refusals are history
    >>> throttle.refusal_probability()
    0.0
    """

    __slots__ = (
        "_accepted",
        "_accepts",
        "_clock",
        "_head",
        "_lock",
        "_now_accepts",
        "_now_requests",
        "_per_width",
        "_requested",
        "_requests",
        "_rng",
        "k",
        "name",
        "window",
    )

    def __init__(
        self,
        k: float = 2.0,
        *,
        window: float | Any = 30.0,
        name: str = "throttle",
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 1.0 <= k <= 100.0:
            raise ConfigError(
                "k", k, "a number from 1 to 100", hint="2 lets through about twice what the service accepts"
            )
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("name", name, "a non-empty name such as 'payments-api'")
        self.k = float(k)
        self.window = to_seconds(window, "window", allow_zero=False)
        if not math.isfinite(self.window):
            raise ConfigError("window", window, "a finite number of seconds, such as 30")
        self.name = name
        self._clock = clock or SYSTEM_CLOCK
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        # A ring of time slices: counts leave the window a slice at a time, not all at once. The slice being
        # filled is counted in two plain numbers (moved into the ring when its time is over), and the totals
        # over the window are kept beside the ring: a call adds to numbers, it never sums or indexes the ring.
        self._per_width = _SLICES / self.window
        self._requests = [0] * _SLICES
        self._accepts = [0] * _SLICES
        self._now_requests = 0
        self._now_accepts = 0
        self._requested = 0
        self._accepted = 0
        self._head = math.floor(self._clock.monotonic() * self._per_width)

    def _advance(self, index: int) -> None:
        """Close the current slice and empty those that fell out of the window by slice ``index``. Call with
        the lock held, with ``index`` above the head."""
        head = self._head
        self._requests[head % _SLICES] = self._now_requests
        self._accepts[head % _SLICES] = self._now_accepts
        self._now_requests = self._now_accepts = 0
        for i in range(head + 1, min(index, head + _SLICES) + 1):
            slot = i % _SLICES
            self._requested -= self._requests[slot]
            self._accepted -= self._accepts[slot]
            self._requests[slot] = 0
            self._accepts[slot] = 0
        self._head = index

    def refusal_probability(self) -> float:
        """The chance that the next request is refused locally, from the window's counts now."""
        with self._lock:
            index = math.floor(self._clock.monotonic() * self._per_width)
            if index > self._head:
                self._advance(index)
            return self._probability()

    def _probability(self) -> float:
        requests = self._requested
        return max(0.0, (requests - self.k * self._accepted) / (requests + 1))

    def admit(self) -> bool:
        """Count one request and decide: True to send it, False to refuse it here."""
        try:
            self.check()
        except RequestThrottled:
            return False
        return True

    def record(self, sent: bool, accepted: bool) -> None:
        """After a request that was ``sent``: count it as accepted when the service took it."""
        if sent and accepted:
            self.record_accept()

    def record_accept(self) -> None:
        """Count one sent request the service accepted (:meth:`record` with both true)."""
        index = math.floor(self._clock.monotonic() * self._per_width)
        with self._lock:
            if index > self._head:
                self._advance(index)
            self._accepted += 1
            self._now_accepts += 1

    def check(self) -> None:
        """Admit one request or raise :class:`~bounceback.errors.RequestThrottled`."""
        index = math.floor(self._clock.monotonic() * self._per_width)
        with self._lock:
            if index > self._head:
                self._advance(index)
            requests = self._requested
            self._requested = requests + 1
            self._now_requests += 1
            if requests <= self.k * self._accepted:
                return  # the service takes what it is sent: nothing to draw (the healthy path)
            p = (requests - self.k * self._accepted) / (requests + 1)
        if self._rng.random() < p:
            raise RequestThrottled(self.name, self.refusal_probability())

    def __repr__(self) -> str:
        return f"AdaptiveThrottle({self.name!r}, k={self.k:g}, window={self.window:g})"
