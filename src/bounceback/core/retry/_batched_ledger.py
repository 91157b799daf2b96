"""Retry budgets shared through a store without a round trip per call: counts flushed once per round.

:class:`BatchedLedger` wraps a shared budget ledger (SQLite, Redis) whose ``settle_many`` takes a batch of calls
and granted retries; a retry is decided in the process against the last reading plus what the process has
granted since, and the counts travel on the backend's :class:`~bounceback.core._flusher.Flusher`, counted once
by batch id. Past ``staleness`` without the store, each process decides from its own calls.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from bounceback.core._flusher import (
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_STALENESS,
    Flusher,
    close_at_exit,
    flush_at_close,
)
from bounceback.core.retry._budget import BudgetLedger, BudgetReading, BudgetRule, LocalLedger
from bounceback.errors import ConfigError, StoreError

__all__ = [
    "BatchedLedger",
    "BatchingLedger",
]

_NEVER = -float("inf")


class BatchingLedger(Protocol):
    """A shared retry-budget ledger that can add a process's batch in one transaction or round trip."""

    def settle_many(
        self, key: str, rule: BudgetRule, calls: int, span: float, retries: int, batch: tuple[str, int] | None
    ) -> BudgetReading:
        """Add ``calls`` made over ``span`` seconds and ``retries`` already granted (a ``batch`` id once)."""
        ...


class _Budget:
    """What the batched ledger knows about one budget key."""

    __slots__ = (
        "calls",
        "fresh_at",
        "inflight",
        "last",
        "p_calls",
        "p_retries",
        "reading",
        "retries",
        "rule",
        "start",
    )

    def __init__(self, rule: BudgetRule) -> None:
        self.rule = rule
        self.reading = BudgetReading(False, 0.0, 0.0, 0.0)  # the store's last answer (fleet-wide)
        self.fresh_at = _NEVER
        self.calls = 0  # deposited here since the last batch was taken, over (start, last]
        self.retries = 0  # granted here since the last batch was taken
        self.start = self.last = 0.0
        self.inflight: tuple[int, int, float, int] | None = (
            None  # (seq, calls, span, retries), resent as it is
        )
        self.p_calls = self.p_retries = 0  # not yet acknowledged by the store (pending and in flight)


class BatchedLedger:
    """A retry-budget ledger whose ``settle`` stays in the process; counts reach the shared ledger in batches.

    It wraps a shared :class:`~bounceback.core.retry._budget.BudgetLedger` (SQLite, Redis) the way
    :class:`BatchedBreakerStore` wraps a breaker store, and rides on the same :class:`Flusher` (one thread
    per process for breakers and budgets alike): ``settle`` adds the calls to a pending count and decides
    a retry from the fleet's last reading plus this process's unsent calls and retries; each round sends
    every budget's pending calls and granted retries in **one** store call (``settle_many``) and takes the
    fleet's new reading back.

    Guarantees: every call and every granted retry is added to the shared window exactly once (a batch
    resent after a timeout carries the same ``(producer, seq)`` id). A retry is granted against a reading
    at most ``flush_seconds`` old (plus this process's own grants since), so in one flush interval ``P``
    processes may together grant up to ``P`` times the budget that was left; the excess is counted, so no
    process is granted another retry until the window's allowance covers it again. While the shared
    ledger cannot be reached for longer than ``staleness``, the process decides from its own calls of the
    last window alone (a private ``LocalLedger``) and sends what it counted when the store is back.

    >>> from bounceback.core.retry._budget import LocalLedger
    >>> ledger = BatchedLedger(LocalLedger(), background=False)
    >>> rule = BudgetRule(0.5, 0.0, 10.0)
    >>> ledger.settle("api", rule, now=1.0, calls=4, span=0.0, spend=True).granted   # decided locally
    True
    >>> ledger.flush()                                                               # one batch
    >>> ledger.settle("api", rule, now=1.0, calls=0, span=0.0, spend=False).retries
    1.0
    """

    def __init__(
        self,
        inner: BudgetLedger,
        *,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        staleness: float = DEFAULT_STALENESS,
        flusher: Flusher | None = None,
        monotonic: Callable[[], float] | None = None,
        background: bool = True,
    ) -> None:
        if isinstance(staleness, bool) or not isinstance(staleness, (int, float)) or staleness <= 0:
            raise ConfigError("store.staleness", staleness, "seconds above 0, such as 1.0")
        self.inner = inner
        self.name: str = getattr(inner, "name", type(inner).__name__)
        self.staleness = float(staleness)
        self._monotonic = monotonic or time.monotonic
        self._owns_flusher = flusher is None
        self._flusher = flusher or Flusher(flush_seconds, name=f"bounceback-flush {self.name}")
        self._background = background
        self._many: Callable[..., BudgetReading] | None = getattr(inner, "settle_many", None)
        self._local = LocalLedger()
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._keys: dict[str, _Budget] = {}
        self._producer = f"{os.getpid()}-{id(self):x}-{time.time_ns():x}"
        self._seq = itertools.count(1)
        self._started = False
        self._closed = False
        self.flushes = 0
        """Store calls made (batches and refreshes), for benchmarks and tests."""
        self.failed_flushes = 0
        """Store calls that raised StoreError (their batches are kept and resent)."""
        close_at_exit(self)

    @property
    def available(self) -> bool:
        """False while some budget decides from local counts because the store has not answered lately."""
        now = self._monotonic()
        with self._lock:
            return all(now - b.fresh_at <= self.staleness for b in self._keys.values())

    def settle(
        self, key: str, rule: BudgetRule, now: float, calls: int, span: float, spend: bool
    ) -> BudgetReading:
        """Count ``calls`` locally and decide a retry from the fleet's last reading plus what is unsent."""
        if not self._started:
            self._start()
        with self._lock:
            b = self._keys.get(key)
            new = b is None
            if b is None:
                b = self._keys[key] = _Budget(rule)
        if new:
            self._flush_key(key, quiet=True)  # the fleet's reading, once, when a budget is first used
        with self._lock:
            b.rule = rule
            if calls:
                begin = now - max(0.0, span)
                b.start = begin if not b.calls else min(b.start, begin)
                b.calls += calls
                b.p_calls += calls
            b.last = max(b.last, now)
            if self._monotonic() - b.fresh_at > self.staleness:
                # The store has not answered lately: this process's own counts decide, and are sent later.
                local = self._local.settle(key, rule, now, calls, span, spend)
                if local.granted:
                    b.retries += 1
                    b.p_retries += 1
                return local
            if calls:
                # This process's own window, kept all along: what decides while the store is away.
                self._local.settle(key, rule, now, calls, span, False)
            r = b.reading
            total_calls = r.calls + b.p_calls
            total_retries = r.retries + b.p_retries
            allowance = rule.allowance(total_calls)
            granted = spend and total_retries + 1.0 <= allowance + 1e-9
            if granted:
                b.retries += 1
                b.p_retries += 1
                total_retries += 1.0
            return BudgetReading(granted, total_calls, total_retries, allowance)

    def _start(self) -> None:
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        if self._background:
            self._flusher.attach(self._round)
            self._flusher.start()

    def _flush_key(self, key: str, *, quiet: bool = False) -> bool:
        """Send ``key``'s batch (or refresh it); a batch kept from a failed call goes first, then the newer one."""
        made = self._send(key, quiet=quiet)
        b = self._keys.get(key)
        if made and b is not None and (b.calls or b.retries):
            self._send(key, quiet=quiet)
        return made

    def _send(self, key: str, *, quiet: bool) -> bool:
        """One store call for ``key`` (its pending batch, or a refresh); True if it made one."""
        with self._io_lock:
            with self._lock:
                b = self._keys.get(key)
                if b is None:
                    return False
                if b.inflight is None and (b.calls or b.retries):
                    b.inflight = (next(self._seq), b.calls, max(0.0, b.last - b.start), b.retries)
                    b.calls = b.retries = 0
                batch, rule = b.inflight, b.rule
            seq, calls, span, retries = batch if batch is not None else (0, 0, 0.0, 0)
            try:
                if self._many is not None:
                    ident = (self._producer, seq) if batch is not None else None
                    reading = self._many(key, rule, calls, span, retries, ident)
                else:
                    reading = self.inner.settle(key, rule, self._monotonic(), calls, span, False)
                    for _ in range(retries):
                        reading = self.inner.settle(key, rule, self._monotonic(), 0, 0.0, True)
            except StoreError:
                self.failed_flushes += 1
                if quiet:
                    return False
                raise
            finally:
                self.flushes += 1
            with self._lock:
                if batch is not None:
                    b.inflight = None
                    b.p_calls -= calls
                    b.p_retries -= retries
                b.reading = reading
                b.fresh_at = self._monotonic()
        return True

    def flush(self, key: str | None = None) -> None:
        """Send the pending counts of ``key`` (default: every budget) now; StoreError if the store fails."""
        error: StoreError | None = None
        for name in [key] if key is not None else list(self._keys):
            try:
                self._flush_key(name)
            except StoreError as exc:
                error = exc
        if error is not None:
            raise error

    def _round(self) -> bool:
        """The flusher's round: every budget with something to send, or due for a refresh."""
        failed = False
        now = self._monotonic()
        for key in list(self._keys):
            b = self._keys[key]
            due = now - b.fresh_at >= self.staleness / 2
            if not (b.calls or b.retries or b.inflight or due):
                continue
            try:
                self._flush_key(key)
            except StoreError:
                failed = True
        return failed

    def pending(self, key: str) -> tuple[int, int]:
        """``(calls, retries)`` counted here and not yet acknowledged by the store."""
        with self._lock:
            b = self._keys.get(key)
            return (0, 0) if b is None else (b.p_calls, b.p_retries)

    def close(self) -> None:
        """Send what is pending (best effort), leave the flusher, and close the inner ledger (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._flusher.detach(self._round)
        if self._owns_flusher:
            self._flusher.stop()
        flush_at_close(self.flush, repr(self.inner), "retry budget counts")
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"BatchedLedger({self.inner!r}, flush_seconds={self._flusher.interval:g}, staleness={self.staleness:g})"
