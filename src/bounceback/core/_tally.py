"""A counter that many threads bump on the success path without a lock, and that never loses a bump.

``x.count += 1`` is a read, an add and a write: two threads can read the same value and one bump is lost.
A :class:`Tally` is an ``itertools.count`` that hands out numbers instead: each bump is a single call into C
that takes the next number, so no two bumps can take the same one. Reading does not look at a shared
integer either: :meth:`Tally.take` draws a number of its own as a mark, and the bumps since the last take
are the numbers handed out between the two marks. Exact by construction, for the price of one C call.

The success path of a policy and a breaker bump a tally; the breaker (or the retry budget) takes it when it
next needs the count, under its own lock, so takes never run concurrently with each other.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

__all__ = ["Tally"]

if TYPE_CHECKING:
    _Count = itertools.count[int]
else:
    _Count = itertools.count  # not subscriptable at run time on 3.11


class Tally(_Count):
    """Count bumps from any thread without a lock; :meth:`take` returns and restarts the count.

    A tally is the ``itertools.count`` itself: ``next(tally)`` counts one, in C. Subclassing rather than
    holding one saves an object and a Python frame per tally (every breaker and retry budget makes one when
    it is created). Make it without arguments: the count starts at 0.

    >>> tally = Tally()
    >>> for _ in range(3):
    ...     _ = next(tally)
    >>> tally.take(), tally.take()
    (3, 0)
    """

    __slots__ = ("_last",)
    _last: int  # the mark of the last take; unset until the first (the count starts at 0)

    @property
    def bump(self) -> Callable[[], int]:
        """Count one (returns the number drawn, which means nothing to the caller). Read it once and keep
        it: each read makes a new bound method."""
        return self.__next__

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
        return zip(first, second, strict=False)  # both endless

    def take(self) -> int:
        """The bumps since the last take. Call from one thread at a time (the owner holds its lock)."""
        mark = next(self)
        try:
            last = self._last
        except AttributeError:  # the first take: the mark before the first number is -1
            last = -1
        self._last = mark
        return mark - last - 1

    def __repr__(self) -> str:
        return "Tally()"
