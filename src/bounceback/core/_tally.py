"""A counter that many threads bump on the success path without a lock, and that never loses a bump.

``x.count += 1`` is a read, an add and a write: two threads can read the same value and one bump is lost.
A :class:`Tally` hands out numbers from one ``itertools.count`` instead: each bump is a single call into C
that takes the next number, so no two bumps can take the same one. Reading does not look at a shared
integer either: :meth:`Tally.take` draws a number of its own as a mark, and the bumps since the last take
are the numbers handed out between the two marks. Exact by construction, for the price of one C call.

The success path of a policy and a breaker bump a tally; the breaker (or the retry budget) takes it when it
next needs the count, under its own lock, so takes never run concurrently with each other.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

__all__ = ["Tally"]


class Tally:
    """Count bumps from any thread without a lock; :meth:`take` returns and restarts the count.

    >>> tally = Tally()
    >>> for _ in range(3):
    ...     _ = tally.bump()
    >>> tally.take(), tally.take()
    (3, 0)
    """

    __slots__ = ("_last", "bump", "numbers")

    def __init__(self) -> None:
        numbers = self.numbers = itertools.count()
        """The counter itself: ``next(numbers)`` counts one, as :attr:`bump` does."""
        self.bump = numbers.__next__
        """Count one (returns the number drawn, which means nothing to the caller)."""
        self._last = -1  # the mark before the first number: the count starts at 0

    @staticmethod
    def paired(first: Tally, second: Tally) -> Iterator[tuple[int, int]]:
        """An iterator whose ``next()`` bumps both tallies, in one call into C (a hot path that counts in
        two tallies at once, such as a call counted by a retry budget and a breaker, pays for one call).

        >>> a, b = Tally(), Tally()
        >>> both = Tally.paired(a, b)
        >>> _ = next(both); _ = next(both)
        >>> a.take(), b.take()
        (2, 2)
        """
        return zip(first.numbers, second.numbers, strict=False)  # both endless

    def take(self) -> int:
        """The bumps since the last take. Call from one thread at a time (the owner holds its lock)."""
        mark = self.bump()
        bumps = mark - self._last - 1
        self._last = mark
        return bumps

    def __repr__(self) -> str:
        return "Tally()"
