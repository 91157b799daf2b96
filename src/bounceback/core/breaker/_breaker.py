"""The circuit breaker: sliding windows, rate thresholds, bounded half-open probes, manual control.

A breaker watches the outcomes of calls to one dependency in a sliding window (the last N calls, or the
last N seconds) and opens when the failure rate, the slow-call rate or a run of consecutive failures
crosses its threshold. While open it refuses calls at once (``CircuitOpenError`` saying when the next
probe is allowed); when the open time is over (lazily on the next call, or by timer) it lets
``half_open_calls`` probes through at once; enough successes close it, a failure opens it again for
longer. Which errors count is decided by the classifier: permanent caller errors (``ValueError``) do not.

The module is split by responsibility: states and store access in ``_breaker_core``, limits, manual
control and metrics in ``_breaker_control``, timers and health checks in ``_breaker_health``, the decorator
/ ``with`` / ``call`` forms in ``_breaker_forms``, windows in ``_window``, the store port in
``_breaker_store``. This module holds the public class and the per-call path.

Counting on the fast path: while ``fast_path`` is true the retry engine (and :meth:`CircuitBreaker.call`)
run the function without ``acquire`` and only call ``count_success()`` after a success, without a lock.
That bumps a :class:`~bounceback.core._tally.Tally`, which loses no bump however many threads race; the
breaker folds the count into its window when it next records a failure or reads its metrics.
"""

from __future__ import annotations

import contextvars
import inspect
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from bounceback.core._events import CallRejected, EventBus, default_bus
from bounceback.core._registry import registry
from bounceback.core._tally import Tally
from bounceback.core._time import SYSTEM_CLOCK, Clock, SystemClock
from bounceback.core.breaker._config import trip_reason
from bounceback.core.breaker._control import _ControlMixin
from bounceback.core.breaker._core import BreakerState, Change, is_warm
from bounceback.core.breaker._forms import _FormsMixin
from bounceback.core.breaker._health import _HealthMixin
from bounceback.core.breaker._metrics import NO_CHECKS, BreakerMetrics, Transition
from bounceback.core.breaker._store import BreakerStore, MemoryBreakerStore, WindowSpec
from bounceback.core.breaker._window import FAILED, OK, SLOW
from bounceback.core.classify._rules import Classification, ClassifierLike, ErrorKind, as_classifier
from bounceback.errors import BulkheadFull, CircuitOpenError, ConfigError, StoreError

__all__ = ["BreakerMetrics", "BreakerState", "CircuitBreaker"]

_C = BreakerState.CLOSED
_O = BreakerState.OPEN
_H = BreakerState.HALF_OPEN
_F = BreakerState.FORCED_OPEN
_D = BreakerState.DISABLED
_PERMANENT = ErrorKind.PERMANENT
_IGNORED = -1
# Permit flags. A permit is (flags, epoch, started, probe token), or None for a plain closed call.
_COUNTED = 1
_PROBE = 2
_monotonic = time.monotonic
_RNG = random.Random()
_NOTHING: Mapping[str, Any] = MappingProxyType({})


class CircuitBreaker(_ControlMixin, _FormsMixin, _HealthMixin):
    """A circuit breaker for one dependency; thread-safe and asyncio-safe.

    Limits (keyword arguments, validated; the settings key in brackets): ``failure_rate`` percent (50)
    [``breaker.failure_rate``], ``slow_call_rate`` percent (100 = off) and ``slow_call_duration`` seconds
    (60), ``window_type`` ``"count"`` or ``"time"`` and ``window`` in calls or seconds (100),
    ``min_calls`` before rates count (10), ``consecutive_failures`` (0 = off), ``open_seconds`` (30)
    growing by ``open_multiplier`` (2) per re-open up to ``open_seconds_max`` (300), ``half_open_calls``
    (3), ``max_in_flight`` (0 = off), ``half_open`` ``"lazy"`` or ``"timer"``, ``health_check_seconds``
    (5), ``record_permanent`` (False: permanent errors do not count as failures).

    Also: ``health_check`` (a sync or async function run while open; returning without error, and not
    ``False``, moves the breaker to half-open), ``is_failure`` (a predicate on the
    :class:`~bounceback.Classification` deciding what counts), ``classifier`` (for direct use), ``store``
    (default: in memory), ``settings`` (a mapping of settings keys or a settings source, followed live),
    ``clock``, ``bus`` and ``timers`` (run timers by itself; default: with the real clock only).

    >>> from bounceback.testing import FakeClock
    >>> clock = FakeClock()
    >>> brk = CircuitBreaker("docs-db", window=4, min_calls=4, open_seconds=10, clock=clock)
    >>> def query():
    ...     raise ConnectionError("database down")
    >>> for _ in range(4):
    ...     try:
    ...         brk.call(query)
    ...     except ConnectionError:
    ...         pass
    >>> brk.state
    <BreakerState.OPEN: 'open'>
    >>> clock.advance(10)
    >>> brk.state
    <BreakerState.HALF_OPEN: 'half_open'>
    """

    __slots__ = ("__weakref__",)

    def __init__(
        self,
        name: str | None = None,
        *,
        health_check: Callable[[], Any] | None = None,
        is_failure: Callable[[Classification], bool] | None = None,
        classifier: ClassifierLike | None = None,
        store: BreakerStore | None = None,
        settings: Mapping[str, Any] | Any = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
        timers: bool | None = None,
        rng: random.Random | None = None,
        **limits: Any,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError("name", name, "a non-empty name such as 'payments-db'")
        if health_check is not None and not callable(health_check):
            raise ConfigError("health_check", health_check, "a function (sync or async) taking no arguments")
        self.name = name if name is not None else f"breaker-{id(self):x}"
        self._key = self.name
        self._explicit = limits  # a fresh dict already (keyword arguments)
        self._overlay: Mapping[str, Any] = _NOTHING
        self._settings = settings
        self._cfg = self._build()
        clock = clock or SYSTEM_CLOCK
        self._clock = clock
        # The system clock's methods wrap C functions: call those directly on the hot path.
        real = isinstance(clock, SystemClock)
        self._real = real
        self._now = time.monotonic if real else clock.monotonic
        self._wall = time.time if real else clock.wall
        self._bus = bus or default_bus
        self._classifier = as_classifier(classifier)
        self._is_failure = is_failure
        self._store = self._active = store if store is not None else MemoryBreakerStore()
        self._shared = bool(self._store.shared)
        self._spec = WindowSpec(self._cfg.window_type, self._cfg.window)
        self._lock = threading.Lock()
        self._state = _C
        self._epoch = 0
        # Successes on the fast path are bumped here by any thread, exactly, without a lock (see Tally).
        self._tally = Tally()
        self.count_success = self._tally.bump
        self._warm = True
        self._open_until = self._open_until_wall = math.inf
        self._reopens = 0
        # One generator for every breaker unless a test injects its own: a Random per breaker would cost
        # 2.5 KB each, and open-time jitter needs no more than independent draws.
        self._rng = rng if rng is not None else _RNG
        self._since = self._now()
        self._since_wall = self._wall()
        self._in_flight = self._probes = self._rejected = self._opens = 0
        # Refusals are counted by any thread without a lock, exactly (see Tally); folded into _rejected.
        self._refusals = Tally()
        self._transitions: deque[Transition] | None = None  # made at the first transition
        self._degraded = False
        self._store_retry_at = self._next_sync = 0.0
        self._health = health_check
        self._health_async = health_check is not None and inspect.iscoroutinefunction(health_check)
        self._health_due = math.inf
        self._health_stats = NO_CHECKS
        self._timers = real if timers is None else bool(timers)
        self._driver: Any = None
        # Timer-thread wake-up, made when a timer thread starts (most breakers never start one).
        self._wake: threading.Event | None = None
        self._stopping = False
        # The permits of open ``with breaker:`` blocks, per thread and task; made at the first block.
        self._permits: contextvars.ContextVar[tuple[Any, ...]] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._reflags()
        self._restore()
        if settings is not None and not isinstance(settings, Mapping):
            self._follow(settings)
        if name is not None:
            registry.add_breaker(self)

    @classmethod
    def from_settings(cls, name: str, settings: Mapping[str, Any] | Any, **kwargs: Any) -> CircuitBreaker:
        """A breaker whose limits come from settings keys (``breaker.failure_rate`` ...).

        ``settings`` is a mapping of keys, or a settings source (with ``effective(name)`` and
        ``subscribe(callback)``) that the breaker then follows live. Keyword arguments win over settings.

        >>> brk = CircuitBreaker.from_settings("docs-api", {"breaker.failure_rate": 20, "breaker.window": 50})
        >>> brk.config.failure_rate, brk.config.window
        (20.0, 50)
        """
        return cls(name, settings=settings, **kwargs)

    def _restore(self) -> None:
        try:
            stored = self._store.load(self._key)
        except StoreError as exc:
            self._fail_over(exc)
            return
        if stored is not None and stored.version != self._epoch:
            with self._lock:
                self._adopt(stored)
            if self._state is _O:
                self._opened()

    # -- the per-call path (the engine's BreakerPort) ----------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now. Reading it moves an open breaker whose open time is over to half-open."""
        st = self._state
        # Calling time.monotonic directly (not through the slot) keeps this within 2x of a bare read.
        if st is _O and (_monotonic() if self._real else self._now()) >= self._open_until:
            self._half_open_if_due()
            return self._state
        return st

    @property
    def state_name(self) -> str:
        """The current state's value (``"open"``), true now: an open breaker whose open time is over says
        ``"half_open"`` (the same clock check as :attr:`state`, made only while open)."""
        st = self._state
        if st is _O and (_monotonic() if self._real else self._now()) >= self._open_until:
            return self.state._value_
        return st._value_  # a plain attribute; Enum.value is a slower descriptor

    def acquire(self) -> Any:
        """Admit one call and return its permit for :meth:`release`, or refuse it.

        Raises ``CircuitOpenError`` while open (``retry_after``: seconds to the next probe), forced open
        (``retry_after`` None) or when the half-open probes are all taken (``retry_after`` 0), and
        ``BulkheadFull`` when ``max_in_flight`` calls are already running.
        """
        st = self._state
        if st is _C:
            if self._plain:
                return None
            return self._admit_closed()
        if st is _O:
            now = self._now()
            until = self._open_until
            if now < until:
                if self._shared and now >= self._next_sync:
                    self._sync(now)
                    return self.acquire()
                self._refusals.bump()
                if self._bus.listening:
                    self._emit_rejected("open", self._open_until_wall)
                raise CircuitOpenError(self.name, "open", self._open_until_wall, until - now)
            self._half_open_if_due()
            return self.acquire()
        if st is _H:
            return self._admit_probe()
        if st is _D:
            return None
        if self._shared and self._now() >= self._next_sync:
            self._sync(self._now())
            if self._state is not _F:
                return self.acquire()
        self._refusals.bump()
        if self._bus.listening:
            self._emit_rejected("forced_open", None)
        raise CircuitOpenError(self.name, "forced_open", None, None)

    def _admit_closed(self) -> Any:
        now = self._now()
        if self._shared and now >= self._next_sync:
            self._sync(now)
            if self._state is not _C:
                return self.acquire()
        cfg = self._cfg
        if self._degraded and cfg.store_unavailable == "fail-closed":
            self._try_store()
            if self._degraded:
                wait = max(0.0, self._store_retry_at - now)
                self._refusals.bump()
                if self._bus.listening:
                    self._emit_rejected("store_unavailable", self._wall() + wait)
                raise CircuitOpenError(self.name, "store_unavailable", self._wall() + wait, wait)
        limit = cfg.max_in_flight
        if not limit:
            return (0, self._epoch, now, 0)
        with self._lock:
            closed = self._state is _C
            if closed and self._in_flight < limit:
                self._in_flight += 1
                return (_COUNTED, self._epoch, now, 0)
        if not closed:
            return self.acquire()
        self._refusals.bump()
        if self._bus.listening:
            self._emit_rejected("closed", None)
        raise BulkheadFull(self.name, limit)

    def _admit_probe(self) -> Any:
        epoch = self._epoch
        token = self._io_acquire_probe(epoch, self._cfg.half_open_calls)
        if token is not None:
            with self._lock:
                if self._epoch == epoch:
                    self._probes += 1
                    return (_PROBE, epoch, self._now(), token)
            # The state moved on while the permit was reserved: give it back and start over.
            self._io_finish_probe(epoch, token, None)
            return self.acquire()
        if self._shared:
            self._sync(self._now())
        if self._epoch != epoch:
            return self.acquire()
        self._refusals.bump()
        if self._bus.listening:
            self._emit_rejected("half_open", self._wall())
        # The probes in flight decide soon; come back after your own backoff.
        raise CircuitOpenError(self.name, "half_open", self._wall(), 0.0)

    def release(self, permit: Any, failure: Classification | None) -> None:
        """Record the outcome of an admitted call: ``failure`` is None on success, else its classification.

        ``permit`` is what :meth:`acquire` returned, or None for a call made on the fast path.
        """
        if failure is None:
            outcome = OK
        elif self._is_failure is not None:
            outcome = FAILED if self._is_failure(failure) else _IGNORED
        elif failure.kind is not _PERMANENT or self._cfg.record_permanent:
            outcome = FAILED
        else:
            outcome = _IGNORED
        if permit is None:
            if self._state is _C:
                if outcome == OK and self.fast_path:
                    self.count_success()
                elif outcome >= 0:
                    self._record(outcome, -1)
            return
        flags, epoch, started, token = permit
        if flags & _COUNTED:
            with self._lock:
                self._in_flight -= 1
        cfg = self._cfg
        if outcome >= 0 and cfg.timed and self._now() - started >= cfg.slow_call_duration:
            outcome |= SLOW
        if flags & _PROBE:
            self._finish_probe(epoch, token, outcome)
        elif outcome >= 0 and epoch == self._epoch and self._state is _C:
            self._record(outcome, epoch)

    def abandon(self, permit: Any) -> None:
        """Give back the permit of a call that ended without an outcome (cancelled or interrupted)."""
        if permit is None:
            return
        flags, epoch, _, token = permit
        if flags & _PROBE:
            self._io_finish_probe(epoch, token, None)
        with self._lock:
            if flags & _COUNTED:
                self._in_flight -= 1
            if flags & _PROBE and self._epoch == epoch:
                self._probes -= 1

    def _record(self, outcome: int, epoch: int) -> None:
        with self._lock:
            successes = self._tally.take()
            if epoch < 0:
                epoch = self._epoch
        counts, stored = self._io_record(successes, outcome)
        change: Change | None = None
        with self._lock:
            if stored is not None and stored.version != self._epoch:
                change = self._adopt(stored)
            elif self._epoch == epoch and self._state is _C:
                reason = trip_reason(self._cfg, counts)
                if reason is not None:
                    change = self._move(_O, reason)
                else:
                    self._warm = is_warm(self._cfg, counts)
                    self._reflags()
        self._after(change)

    def _finish_probe(self, epoch: int, token: int, outcome: int) -> None:
        success = None if outcome < 0 else outcome == OK
        successes = self._io_finish_probe(epoch, token, success)
        change: Change | None = None
        with self._lock:
            if self._epoch == epoch:
                self._probes -= 1
                if self._state is _H:
                    if success is False:
                        why = "a probe was slow" if outcome == SLOW else "a probe failed"
                        change = self._move(_O, why)
                    elif success and successes >= self._cfg.half_open_calls:
                        why = "1 probe succeeded" if successes == 1 else f"{successes} probes succeeded"
                        change = self._move(_C, why, clear=True, reopens=0)
        self._after(change)
        if successes < 0 and self._shared:
            self._sync(self._now())

    def _half_open_if_due(self) -> None:
        self._timer_half_open()

    def _emit_rejected(self, state: str, retry_at: float | None) -> None:
        self._bus.emit(CallRejected(self.name, self._wall(), state, retry_at))

    def __repr__(self) -> str:
        cfg = self._cfg
        return (
            f"CircuitBreaker({self.name!r}, state={self._state.value!r}, failure_rate={cfg.failure_rate:g}, "
            f"window={cfg.window_type}:{cfg.window:g}, open_seconds={cfg.open_seconds:g})"
        )
