"""Delay maths: how long to wait before each retry. Pure functions of the retry number and a random source.

Jitter kinds follow Marc Brooker's "Exponential Backoff and Jitter" (AWS Architecture Blog, 2015):

- ``none``: the base delay itself.
- ``full``: uniform in ``[0, base]``; the least total work under contention.
- ``equal``: ``base/2`` plus uniform in ``[0, base/2]``; never shorter than half the base.
- ``decorrelated``: ``min(cap, uniform(initial, previous * 3))``, the previous wait starting at ``initial``;
  each wait depends on the one before. The cap applies to the draw, as in the article, not to the range:
  capping the range first (``uniform(initial, min(cap, previous * 3))``) makes grown waits much shorter
  (with 0.2 s and 30 s they averaged 8.2 s instead of about 14 s: 1.7x more retries in a long outage).
"""

from __future__ import annotations

import enum
import functools
import math
import random
from collections.abc import Callable
from typing import Any

from bounceback.core._time import to_seconds
from bounceback.errors import ConfigError

__all__ = ["Backoff", "BackoffKind", "Jitter"]


class Jitter(enum.Enum):
    """How randomness spreads the waits of many clients apart."""

    NONE = "none"
    FULL = "full"
    EQUAL = "equal"
    DECORRELATED = "decorrelated"


class BackoffKind(enum.Enum):
    """How the base delay grows with each retry."""

    CONSTANT = "constant"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


def _enum(cls: type[enum.Enum], value: Any, field: str) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).lower())
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in cls)
        raise ConfigError(field, value, f"one of {allowed}") from None


_FULL, _NONE, _EQUAL = Jitter.FULL, Jitter.NONE, Jitter.EQUAL


class Backoff:
    """The waits between attempts.

    ``initial`` is the first base delay, ``max_delay`` the cap on any wait, ``multiplier`` the growth per
    retry (exponential: ``initial * multiplier**n``; linear: ``initial * (1 + multiplier*n)``; constant:
    ``initial``). All durations are seconds or ``timedelta``.

    >>> Backoff(initial=0.1, max_delay=1, jitter="none").schedule(5)
    [0.1, 0.2, 0.4, 0.8, 1.0]
    >>> len(Backoff().schedule(3, seed=7))
    3
    """

    __slots__ = ("_bases", "delay", "first_wait", "initial", "jitter", "kind", "max_delay", "multiplier")

    def __init__(
        self,
        kind: BackoffKind | str = BackoffKind.EXPONENTIAL,
        *,
        initial: float | Any = 0.2,
        max_delay: float | Any = 30.0,
        multiplier: float = 2.0,
        jitter: Jitter | str = Jitter.FULL,
    ) -> None:
        self.kind: BackoffKind = _enum(BackoffKind, kind, "kind")
        self.jitter: Jitter = _enum(Jitter, jitter, "jitter")
        self.initial = to_seconds(initial, "initial")
        self.max_delay = to_seconds(max_delay, "max_delay")
        if self.max_delay < self.initial:
            raise ConfigError(
                "max_delay",
                max_delay,
                f"a cap >= initial ({self.initial:g} s)",
                hint="raise max_delay or lower initial",
            )
        if (
            isinstance(multiplier, bool)
            or not isinstance(multiplier, (int, float))
            or not math.isfinite(multiplier)
            or multiplier < (0 if self.kind is BackoffKind.LINEAR else 1)
            or multiplier > 1000
        ):
            low = 0 if self.kind is BackoffKind.LINEAR else 1
            raise ConfigError("multiplier", multiplier, f"a finite number from {low} to 1000")
        self.multiplier = float(multiplier)
        # The bases are computed once, up to the cap (every later one is the cap): the retry decision then
        # costs a tuple index, and a Backoff stays small (9 floats for the defaults, not 64).
        bases = []
        for n in range(64):
            bases.append(self._base(n))
            if bases[-1] >= self.max_delay:
                break
        self._bases = tuple(bases)
        start, end = self.bounds(0, 0.0)
        if self.jitter is Jitter.DECORRELATED:
            end = max(start, start * 3)  # the draw's range; the cap applies to the draw (see decorrelated)
        elif self.jitter is Jitter.EQUAL:
            # delay() draws half + r * half: a width of half, as there (base - base / 2 is not half when the
            # base is the smallest float, whose half rounds to 0).
            end = 2 * start
        self.first_wait: tuple[float, float | None, float] = (
            start,
            None if self.jitter is Jitter.NONE else end - start,
            self.max_delay,
        )
        """``(low, width, cap)``: the first wait is ``min(cap, low + width * rng.random())``, or ``low`` with
        no draw when ``width`` is None (no jitter): the value :attr:`delay` gives for retry 0, with the same
        use of the random source. The common first retry is decided from it without a call
        (``Engine.first``)."""
        self.delay: Callable[[int, float, random.Random | Any], float] = self._drawing()
        """``delay(retry, previous, rng)``: the wait before retry number ``retry`` (0-based); ``previous`` is
        the last wait (decorrelated jitter). A plain function laid out once for this backoff's jitter: the
        retry decision calls it on every failure, and a function of its own costs neither a bound method nor
        a test of the jitter kind per call."""

    def _base(self, retry: int) -> float:
        return _nth_base(self.kind, self.initial, self.multiplier, self.max_delay, retry)

    def base(self, retry: int) -> float:
        """The un-jittered delay before retry number ``retry`` (0 for the first retry), capped."""
        bases = self._bases
        return bases[retry] if retry < len(bases) else self._base(retry)

    def _drawing(self) -> Callable[[int, float, random.Random | Any], float]:
        """The delay function of this backoff's jitter, over its table of bases (past the table: ``base``)."""
        bases, jitter = self._bases, self.jitter
        # Past the table of bases: computed (a partial, not the bound method, so no cycle through self).
        base_of = functools.partial(_nth_base, self.kind, self.initial, self.multiplier, self.max_delay)
        if jitter is _FULL:

            def full(retry: int, previous: float, rng: random.Random | Any) -> float:  # noqa: ARG001
                try:
                    return rng.random() * bases[retry]
                except IndexError:  # past the cap
                    return rng.random() * base_of(retry)

            return full
        if jitter is _NONE:

            def none(retry: int, previous: float, rng: random.Random | Any) -> float:  # noqa: ARG001
                try:
                    return bases[retry]
                except IndexError:
                    return base_of(retry)

            return none
        if jitter is _EQUAL:

            def equal(retry: int, previous: float, rng: random.Random | Any) -> float:  # noqa: ARG001
                try:
                    half = bases[retry] / 2
                except IndexError:
                    half = base_of(retry) / 2
                return half + rng.random() * half

            return equal
        low, cap = self.initial, self.max_delay

        # Decorrelated (Brooker): sleep = min(cap, uniform(base, 3 * sleep)). The draw is capped, not the
        # range, so once 3 * previous passes the cap about half the waits are the cap itself.
        def decorrelated(retry: int, previous: float, rng: random.Random | Any) -> float:  # noqa: ARG001
            high = max(low, (previous if previous > 0 else low) * 3)
            return min(cap, low + rng.random() * (high - low))

        return decorrelated

    def bounds(self, retry: int, previous: float | None = None) -> tuple[float, float]:
        """The lowest and highest wait the jitter can give before retry ``retry`` (the jitter band)."""
        base = self.base(retry)
        if self.jitter is Jitter.FULL:
            return (0.0, base)
        if self.jitter is Jitter.NONE:
            return (base, base)
        if self.jitter is Jitter.EQUAL:
            return (base / 2, base)
        if previous is None:
            # Without the previous wait, the widest band decorrelated jitter can reach by this retry.
            high = min(self.max_delay, self.initial * 3 ** (min(retry, 64) + 1))
            return (self.initial, max(self.initial, high))
        return (self.initial, max(self.initial, min(self.max_delay, max(previous, self.initial) * 3)))

    def schedule(self, n: int, seed: int | None = None) -> list[float]:
        """The ``n`` waits a retry sequence would use; the same ``seed`` gives the same list.

        >>> Backoff(jitter="full").schedule(4, seed=1) == Backoff(jitter="full").schedule(4, seed=1)
        True
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError("n", n, "a whole number >= 0")
        rng = random.Random(seed)
        waits: list[float] = []
        previous = 0.0
        for retry in range(n):
            previous = self.delay(retry, previous, rng)
            waits.append(previous)
        return waits

    def to_dict(self) -> dict[str, Any]:
        """A plain description, as stored in settings and shown by the CLI."""
        return {
            "kind": self.kind.value,
            "initial": self.initial,
            "max_delay": self.max_delay,
            "multiplier": self.multiplier,
            "jitter": self.jitter.value,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its description: the delay function laid out for its jitter is made again on loading
        # (a function made inside a method cannot be pickled).
        d = self.to_dict()
        return (_backoff, (d["kind"], d["initial"], d["max_delay"], d["multiplier"], d["jitter"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Backoff) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().values()))

    def __repr__(self) -> str:
        return (
            f"Backoff({self.kind.value!r}, initial={self.initial:g}, max_delay={self.max_delay:g}, "
            f"multiplier={self.multiplier:g}, jitter={self.jitter.value!r})"
        )


def _backoff(kind: str, initial: float, max_delay: float, multiplier: float, jitter: str) -> Backoff:
    """A Backoff from the fields of its description (what pickling a Backoff stores)."""
    return Backoff(kind, initial=initial, max_delay=max_delay, multiplier=multiplier, jitter=jitter)


def _nth_base(kind: BackoffKind, initial: float, multiplier: float, cap: float, retry: int) -> float:
    """The un-jittered delay before retry number ``retry``, capped."""
    if kind is BackoffKind.CONSTANT:
        value = initial
    elif kind is BackoffKind.LINEAR:
        value = initial * (1 + multiplier * retry)
    else:
        try:
            value = initial * multiplier**retry
        except OverflowError:
            # Far past the cap anyway; floats cannot hold the power itself.
            value = cap
    return min(value, cap)
