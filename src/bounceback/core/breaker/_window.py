"""Sliding windows of call outcomes for circuit breakers: by count and by time.

Both keep running totals so recording an outcome and reading the counts are O(1) (amortised): a breaker
asks after every failure whether the window now crosses a threshold, and that must not cost a scan.

An outcome is a small int: bit 0 set for a failure, bit 1 set for a slow call (``OK``, ``FAILED``,
``SLOW``, ``SLOW | FAILED``).
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

__all__ = ["CountWindow", "Counts", "FAILED", "OK", "SLOW", "TimeWindow", "WindowCounts", "time_buckets"]

Counts = tuple[int, int, int, int]
"""What a window's ``record`` returns: the fields of :class:`WindowCounts`, in a plain tuple (built in a
third of the time, on every failure; a store hands it on as a ``WindowCounts``)."""

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
    """The last ``size`` outcomes, kept as a running count of every outcome ever added and the positions
    of the failures and slow calls among them; and the run of consecutive failures at the newest end.

    A success is only a step of the count: ``n`` successes cost the same as one, so a breaker that folds
    the successes of its fast path into the window pays nothing per success. A failure (or slow call)
    appends its position; positions that fell ``size`` outcomes behind the newest leave from the front.
    Memory follows the failures in the window, not its size: a window of a million calls that sees few
    failures stays small.

    >>> w = CountWindow(3)
    >>> for outcome in (FAILED, OK, FAILED, OK):
    ...     _ = w.record(0, outcome)
    >>> w.calls, w.failures
    (3, 1)
    """

    __slots__ = ("_failed", "_failed_head", "_slowed", "_slowed_head", "consecutive", "seen", "size")

    timed: ClassVar[bool] = False
    """Whether :meth:`record` reads ``now``: a count has no time, so a caller need not read its clock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen = 0
        """Outcomes ever added: the position of the newest."""
        self.consecutive = 0
        """Failures in a row at the newest end."""
        # Positions, oldest first; those before the head have left the window. The list is cut now and
        # then (see _drop), so each position is copied at most once more.
        self._failed: list[int] = []
        self._failed_head = 0
        self._slowed: list[int] = []
        self._slowed_head = 0

    def record(self, successes: int, outcome: int, now: float = 0.0) -> Counts:  # noqa: ARG002
        """Record ``successes`` plain successes, then one ``outcome`` (negative: none); the counts after, as
        :class:`WindowCounts` holds them. (``now`` is for the time window's sake: a count has no time.)"""
        if outcome != FAILED:
            return self._record(successes, outcome)
        # A plain failure (the breaker's every-failure step), kept short.
        seen = self.seen + successes + 1
        failed = self._failed
        failed.append(seen)
        run = 1 if successes else self.consecutive + 1
        self.seen = seen
        self.consecutive = run
        oldest = seen - self.size  # positions up to this one have left the window
        if oldest <= 0:
            return (seen, len(failed), len(self._slowed), run)
        head = self._failed_head
        if failed[head] <= oldest:  # never past the end: the newest position is in the window
            # Most often this one failure left the window: one step, made here. More, or a list due to
            # be cut, take _drop.
            head += 1
            if failed[head] <= oldest or (head > _CUT_AFTER and head * 2 > len(failed)):
                head = _drop(failed, head - 1, oldest)
            self._failed_head = head
        slow = self._slow_left(oldest) if self._slowed else 0
        return (self.size, len(failed) - head, slow, run)

    def _record(self, successes: int, outcome: int) -> Counts:
        seen = self.seen + successes
        run = 0 if successes else self.consecutive
        if outcome >= 0:
            seen += 1
            if outcome & FAILED:
                self._failed.append(seen)
                run += 1
            else:
                run = 0
            if outcome & SLOW:
                self._slowed.append(seen)
        self.seen = seen
        self.consecutive = run
        oldest = seen - self.size
        failed = self._failed
        if oldest <= 0:
            return (seen, len(failed), len(self._slowed), run)
        head = self._failed_head
        if head < len(failed) and failed[head] <= oldest:
            head = self._failed_head = _drop(failed, head, oldest)
        slow = self._slow_left(oldest) if self._slowed else 0
        return (self.size, len(failed) - head, slow, run)

    def _slow_left(self, oldest: int) -> int:
        slowed = self._slowed
        head = self._slowed_head
        if head < len(slowed) and slowed[head] <= oldest:
            head = self._slowed_head = _drop(slowed, head, oldest)
        return len(slowed) - head

    @property
    def calls(self) -> int:
        """Outcomes in the window."""
        return min(self.seen, self.size)

    @property
    def failures(self) -> int:
        """Failures in the window."""
        return len(self._failed) - self._failed_head

    @property
    def slow(self) -> int:
        """Slow calls in the window."""
        return len(self._slowed) - self._slowed_head

    def counts(self, now: float = 0.0) -> WindowCounts:  # noqa: ARG002 - as record
        """The counts now."""
        return WindowCounts(self.calls, self.failures, self.slow, self.consecutive)

    def add(self, outcome: int) -> None:
        """Record one outcome."""
        self.record(0, outcome)

    def add_successes(self, n: int) -> None:
        """Record ``n`` plain successes at once (the fast path's batch)."""
        if n > 0:
            self.record(n, -1)


_CUT_AFTER = 32
"""A list of positions is cut once more than this many, and most of it, lie behind its head."""


def _drop(positions: list[int], head: int, oldest: int) -> int:
    """Move ``head`` past the positions up to ``oldest`` (they left the window); the new head. The list is
    cut when most of it lies behind the head."""
    end = len(positions)
    head += 1
    while head < end and positions[head] <= oldest:
        head += 1
    if head > _CUT_AFTER and head * 2 > end:
        del positions[:head]
        head = 0
    return head


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
        "consecutive",
        "failures",
        "size",
        "slow",
    )

    timed: ClassVar[bool] = True
    """Whether :meth:`record` reads ``now``: buckets age with it."""

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
        self.consecutive = 0
        """Failures in a row at the newest end (whatever their age)."""

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

    def record(self, successes: int, outcome: int, now: float) -> Counts:
        """Record ``successes`` plain successes, then one ``outcome`` (negative: none), at ``now``; the
        counts after, as :class:`WindowCounts` holds them."""
        run = 0 if successes else self.consecutive
        if successes:
            self.add_successes(successes, now)
        if outcome >= 0:
            self.add(outcome, now)
            run = run + 1 if outcome & FAILED else 0
        else:
            self.expire(now)
        self.consecutive = run
        return (self.calls, self.failures, self.slow, run)

    def counts(self, now: float) -> WindowCounts:
        """The counts at ``now`` (what fell out of the window by then is forgotten)."""
        self.expire(now)
        return WindowCounts(self.calls, self.failures, self.slow, self.consecutive)
