"""Small parts shared by the sync and async halves of a Policy: the unset marker and RetryAgain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bounceback.core.retry._engine import GiveUp

__all__ = ["FallbackArg", "RetryAgain", "UNSET", "Unset"]


class Unset:
    """The type of :data:`UNSET`: "not given here, take it from the settings or the built-in default"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = Unset()
"""The default of Policy arguments whose value comes from settings when not given (None means "none")."""


@dataclass(frozen=True, slots=True)
class RetryAgain:
    """Returned by a fallback handler to run the operation again, optionally with other limits.

    >>> RetryAgain(attempts=10, deadline=120)
    RetryAgain(attempts=10, deadline=120)
    """

    attempts: int | None = None
    deadline: float | None = None
    on_outcome: Callable[[bool], None] | None = field(default=None, repr=False, compare=False)
    """Told once whether the run again succeeded (True) or gave up too (False, before its fallback runs)."""


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _count_call(budget: object) -> None:
    """Count one call for a retry budget that counts calls (its ``count_call``)."""
    count = getattr(budget, "count_call", None)
    if count is not None:
        count()


Fallback = Callable[[GiveUp], Any]

FallbackArg = Callable[[GiveUp], Any] | object
"""What ``fallback=`` takes: a function of :class:`GiveUp` returning the value (or a :class:`RetryAgain`,
sync or awaitable), or the value itself."""


class _FollowUp:
    """The fallback of a run again that reports its outcome: tells ``on_outcome(False)`` before handing
    over to the original fallback, or ``on_outcome(True)`` through :meth:`succeeded`; once either way."""

    __slots__ = ("fallback", "on_outcome", "told")

    def __init__(self, fallback: Any, on_outcome: Callable[[bool], None]) -> None:
        self.fallback = fallback
        self.on_outcome = on_outcome
        self.told = False

    def __call__(self, info: GiveUp) -> Any:
        self._tell(False)
        return self.fallback(info) if callable(self.fallback) else self.fallback

    def succeeded(self) -> None:
        self._tell(True)

    def _tell(self, ok: bool) -> None:
        if not self.told:
            self.told = True
            self.on_outcome(ok)
