"""Sliding windows of call outcomes for circuit breakers: by count and by time.

Both keep running totals so recording an outcome and reading the counts are O(1) (amortised): a breaker
asks after every failure whether the window now crosses a threshold, and that must not cost a scan.

An outcome is a small int: bit 0 set for a failure, bit 1 set for a slow call (``OK``, ``FAILED``,
``SLOW``, ``SLOW | FAILED``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["CountWindow", "FAILED", "OK", "SLOW", "TimeWindow", "WindowCounts", "time_buckets"]

OK = 0
FAILED = 1
SLOW = 2


class WindowCounts(NamedTuple):
    """The counts of a breaker's window at one moment.

    >>> WindowCounts(calls=10, failures=5, slow=0, consecutive_failures=2).failure_rate
    50.0
    """

    calls: int = 0
    failures: int = 0
    slow: int = 0
    consecutive_failures: int = 0

    @property
    def failure_rate(self) -> float:
        """Failures as a percentage of the calls in the window (0.0 when it is empty)."""
        return 100.0 * self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        """Slow calls as a percentage of the calls in the window (0.0 when it is empty)."""
        return 100.0 * self.slow / self.calls if self.calls else 0.0


class CountWindow:
    """The last ``size`` outcomes, in a ring of bytes.

    >>> w = CountWindow(3)
    >>> for outcome in (FAILED, OK, FAILED, OK):
    ...     w.add(outcome)
    >>> w.calls, w.failures
    (3, 1)
    """

    __slots__ = ("_buf", "_head", "calls", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self._buf = bytearray(size)
        self._head = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def add(self, outcome: int) -> None:
        """Record one outcome, pushing out the oldest when the ring is full."""
        buf = self._buf
        head = self._head
        if self.calls == self.size:
            old = buf[head]
            self.failures -= old & FAILED
            self.slow -= (old & SLOW) >> 1
        else:
            self.calls += 1
        buf[head] = outcome
        self.failures += outcome & FAILED
        self.slow += (outcome & SLOW) >> 1
        head += 1
        self._head = 0 if head == self.size else head

    def add_successes(self, n: int) -> None:
        """Record ``n`` plain successes at once (the fast path's batch), in C-speed slices."""
        if n <= 0:
            return
        if n <= 4:
            # A few (the common case: successes between two failures): one at a time beats three slices.
            for _ in range(n):
                self.add(0)
            return
        size = self.size
        if n >= size:
            self._buf = bytearray(size)
            self._head = 0
            self.calls = size
            self.failures = self.slow = 0
            return
        buf = self._buf
        head = self._head
        end = head + n
        # Slots never written hold 0 (a success), so counting failures in them subtracts nothing.
        if end <= size:
            region = bytes(buf[head:end])
            buf[head:end] = bytes(n)
        else:
            region = bytes(buf[head:]) + bytes(buf[: end - size])
            buf[head:] = bytes(size - head)
            buf[: end - size] = bytes(end - size)
        both = region.count(FAILED | SLOW)
        self.failures -= region.count(FAILED) + both
        self.slow -= region.count(SLOW) + both
        self.calls = min(self.calls + n, size)
        self._head = end % size


def time_buckets(seconds: float) -> int:
    """How many buckets a time window of ``seconds`` uses: about one per second, 10 to 100 of them."""
    return min(100, max(10, math.ceil(seconds)))


class TimeWindow:
    """Outcomes of the last ``seconds``, in a ring of buckets that age out one bucket at a time.

    ``now`` is any clock that does not go backwards by much (a reading that lags the newest bucket is
    counted in the newest bucket).

    >>> w = TimeWindow(10.0)
    >>> w.add(FAILED, now=0.5)
    >>> w.add(OK, now=5.0)
    >>> w.expire(now=10.6)
    >>> w.calls, w.failures
    (1, 0)
    """

    __slots__ = (
        "_calls",
        "_failures",
        "_head",
        "_slow",
        "_width",
        "buckets",
        "calls",
        "failures",
        "size",
        "slow",
    )

    def __init__(self, seconds: float, buckets: int | None = None) -> None:
        self.size = seconds
        self.buckets = buckets or time_buckets(seconds)
        self._width = seconds / self.buckets
        self._calls = [0] * self.buckets
        self._failures = [0] * self.buckets
        self._slow = [0] * self.buckets
        self._head: int | None = None
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def expire(self, now: float) -> None:
        """Forget the buckets that fell out of the window by ``now``."""
        index = math.floor(now / self._width)
        head = self._head
        if head is None:
            self._head = index
            return
        if index <= head:
            return
        n = self.buckets
        if index - head >= n:
            self._calls = [0] * n
            self._failures = [0] * n
            self._slow = [0] * n
            self.calls = self.failures = self.slow = 0
        else:
            for i in range(head + 1, index + 1):
                slot = i % n
                self.calls -= self._calls[slot]
                self.failures -= self._failures[slot]
                self.slow -= self._slow[slot]
                self._calls[slot] = self._failures[slot] = self._slow[slot] = 0
        self._head = index

    def add(self, outcome: int, now: float) -> None:
        """Record one outcome at time ``now``."""
        self.expire(now)
        slot = (self._head or 0) % self.buckets
        failed = outcome & FAILED
        slow = (outcome & SLOW) >> 1
        self._calls[slot] += 1
        self._failures[slot] += failed
        self._slow[slot] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def add_successes(self, n: int, now: float) -> None:
        """Record ``n`` plain successes at time ``now``."""
        if n <= 0:
            return
        self.expire(now)
        self._calls[(self._head or 0) % self.buckets] += n
        self.calls += n
