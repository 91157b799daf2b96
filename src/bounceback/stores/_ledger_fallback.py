"""What a shared retry-budget ledger does when its store fails: count locally, say so, try again later.

A retry budget is asked before every retry, so a store that cannot be reached must not turn into an error
in the user's call. The shared ledgers (SQLite, Redis) hand their store errors to a :class:`LedgerFallback`:
the budget carries on in a private :class:`~bounceback.core.retry._budget.LocalLedger` (this process's own calls
and retries only), emits ``StoreUnavailable`` once, asks the store again every ``retry_seconds`` and emits
``StoreRecovered`` when it answers. What was counted locally meanwhile is not merged back: it is at most
one window's worth, and the shared window has moved on by then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bounceback.core._events import EventBus, StoreRecovered, StoreUnavailable, default_bus
from bounceback.core._time import Clock
from bounceback.core.retry._budget import BudgetReading, BudgetRule, LocalLedger
from bounceback.errors import ConfigError, StoreError

__all__ = ["LedgerFallback"]

_log = logging.getLogger("bounceback.budget")


class LedgerFallback:
    """The local stand-in of one shared ledger, and the bookkeeping of when to try the store again.

    >>> from bounceback.testing import FakeClock
    >>> from bounceback.core.retry._budget import BudgetRule
    >>> fallback = LedgerFallback("redis://db", FakeClock(), EventBus(), retry_seconds=5)
    >>> def unreachable():
    ...     raise StoreError("redis://db", "settle", "connection refused")
    >>> fallback.settle(unreachable, "api", BudgetRule(0.5, 1.0, 10.0), 0, 0.0, True).granted
    True
    >>> fallback.available
    False
    """

    __slots__ = ("_bus", "_clock", "_local", "_retry_at", "available", "retry_seconds", "store")

    def __init__(self, store: str, clock: Clock, bus: EventBus | None, retry_seconds: float) -> None:
        if (
            isinstance(retry_seconds, bool)
            or not isinstance(retry_seconds, (int, float))
            or retry_seconds <= 0
        ):
            raise ConfigError(
                "retry_seconds", retry_seconds, "seconds > 0 between attempts to reach the store"
            )
        self.store = store
        self.retry_seconds = float(retry_seconds)
        self.available = True
        """False while the budget runs on local counts."""
        self._clock = clock
        self._bus = bus or default_bus
        self._local = LocalLedger()
        self._retry_at = 0.0

    def settle(
        self,
        shared: Callable[[], BudgetReading],
        key: str,
        rule: BudgetRule,
        calls: int,
        span: float,
        spend: bool,
    ) -> BudgetReading:
        """``shared()`` when the store may be used, else (or when it fails) the same settle done locally."""
        now = self._clock.monotonic()
        if not self.available and now < self._retry_at:
            return self._local.settle(key, rule, now, calls, span, spend)
        try:
            reading = shared()
        except StoreError as exc:
            self._retry_at = now + self.retry_seconds
            if self.available:
                self.available = False
                _log.warning("retry budget %r counts locally: %s", key, exc)
                if self._bus.listening:
                    self._bus.emit(StoreUnavailable(key, self._clock.wall(), self.store, str(exc)))
            return self._local.settle(key, rule, now, calls, span, spend)
        if not self.available:
            self.available = True
            _log.info("retry budget %r is shared again through %s", key, self.store)
            if self._bus.listening:
                self._bus.emit(StoreRecovered(key, self._clock.wall(), self.store))
        return reading
