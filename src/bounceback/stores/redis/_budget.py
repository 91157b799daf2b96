"""Retry budgets shared by a fleet, in Redis or Valkey: one script call (one round trip) per settle.

:class:`RedisBudgetLedger` implements the :class:`~bounceback.core.retry._budget.BudgetLedger` port. A budget's
window is one hash (``<prefix>{name}``) holding a ring of ``slices`` slices keyed by absolute index, and
it expires by itself two windows after its last use, so idle budgets leave nothing behind.

When Redis cannot be reached, budgets count locally for a while instead of failing the user's call
(:class:`~bounceback.stores._ledger_fallback.LedgerFallback`).

Time: the ``now`` a budget passes in is its process's monotonic clock, which means nothing on another
machine, so the ledger sends the wall clock (``clock.wall()``) instead; the machines of a fleet must keep
their clocks in sync (NTP).
"""

from __future__ import annotations

import math
from typing import Any

from bounceback.core._events import EventBus
from bounceback.core._time import SYSTEM_CLOCK, Clock
from bounceback.core.retry._budget import BudgetReading, BudgetRule
from bounceback.errors import ConfigError
from bounceback.stores._ledger_fallback import LedgerFallback
from bounceback.stores.redis._lua import BUDGET_LUA, LuaScript
from bounceback.stores.redis._store import DEFAULT_REDIS_TIMEOUT, RedisLink

__all__ = ["RedisBudgetLedger"]


class RedisBudgetLedger:
    """A :class:`~bounceback.core.retry._budget.BudgetLedger` in Redis or Valkey, shared by a fleet.

    .. code-block:: text

        ledger = RedisBudgetLedger("redis://cache.internal:6379/0")
        budget = RetryBudget(0.1, name="payments-api", ledger=ledger)
    """

    __slots__ = ("_clock", "_fallback", "_link", "_script", "name", "prefix", "slices")

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "bounceback:budget:",
        slices: int = 10,
        clock: Clock | None = None,
        timeout: float = DEFAULT_REDIS_TIMEOUT,
        bus: EventBus | None = None,
        retry_seconds: float = 5.0,
    ) -> None:
        if isinstance(slices, bool) or not isinstance(slices, int) or not 1 <= slices <= 1000:
            raise ConfigError("slices", slices, "a whole number from 1 to 1000")
        self._link = RedisLink(url, client=client, timeout=timeout)
        self._script = LuaScript(BUDGET_LUA)
        self._clock = clock or SYSTEM_CLOCK
        self.prefix = prefix
        self.slices = slices
        self.name = self._link.name
        """``redis://host:port/db`` (without the password)."""
        self._fallback = LedgerFallback(self.name, self._clock, bus, retry_seconds)

    @property
    def available(self) -> bool:
        """False while Redis cannot be reached and budgets count locally (see ``LedgerFallback``)."""
        return self._fallback.available

    def settle(
        self,
        key: str,
        rule: BudgetRule,
        now: float,  # noqa: ARG002 - a process-local monotonic reading; the wall clock is sent instead
        calls: int,
        span: float,
        spend: bool,
    ) -> BudgetReading:
        """Record ``calls`` made over the last ``span`` seconds; spend one retry if ``spend`` and allowed."""
        width = rule.window / self.slices
        args = (
            repr(width), self.slices, repr(self._clock.wall()), calls, repr(float(span)), "1" if spend else "0",
            repr(float(rule.ratio)), repr(rule.floor), math.ceil(rule.window * 2000) + 1000,
        )  # fmt: skip
        keys = (f"{self.prefix}{{{key}}}",)

        def shared() -> BudgetReading:
            reply = self._link.run(self._script, keys, args, f"settle the retry budget {key!r}")
            return BudgetReading(bool(int(reply[0])), float(reply[1]), float(reply[2]), float(reply[3]))

        return self._fallback.settle(shared, key, rule, calls, span, spend)

    def settle_many(
        self, key: str, rule: BudgetRule, calls: int, span: float, retries: int, batch: tuple[str, int] | None
    ) -> BudgetReading:
        """Add a process's batch in one script call: ``calls`` over ``span`` seconds and ``retries`` it granted.

        No fallback here: a failure raises :class:`~bounceback.errors.StoreError` and the batching ledger keeps
        the batch and resends it under the same ``batch`` id (``(producer, seq)``), which is added once.
        """
        producer, seq = batch if batch is not None else ("", 0)
        args = (
            repr(rule.window / self.slices), self.slices, repr(self._clock.wall()), calls, repr(float(span)), "0",
            repr(float(rule.ratio)), repr(rule.floor), math.ceil(rule.window * 2000) + 1000, retries, producer, seq,
        )  # fmt: skip
        reply = self._link.run(
            self._script, (f"{self.prefix}{{{key}}}",), args, f"send a batch to the retry budget {key!r}"
        )
        return BudgetReading(False, float(reply[1]), float(reply[2]), float(reply[3]))

    def close(self) -> None:
        """Close the client's connections."""
        self._link.close()

    def __repr__(self) -> str:
        return f"RedisBudgetLedger({self.name!r}, prefix={self.prefix!r}, slices={self.slices})"
