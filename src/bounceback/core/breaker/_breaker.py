"""The circuit breaker: sliding windows, rate thresholds, bounded half-open probes, manual control.

A breaker watches the outcomes of calls to one dependency in a sliding window (the last N calls, or the
last N seconds) and opens when the failure rate, the slow-call rate or a run of consecutive failures
crosses its threshold. While open it refuses calls at once (``CircuitOpenError`` saying when the next
probe is allowed); when the open time is over (lazily on the next call, or by timer) it lets
``half_open_calls`` probes through at once; enough successes close it, a failure opens it again for
longer. Which errors count is decided by the classifier: permanent caller errors (``ValueError``) do not.

**Parts.** :class:`CircuitBreaker` holds the per-call path (``acquire`` / ``release`` / ``abandon``, the
engine's ``BreakerPort``), its limits (:class:`~bounceback.core.breaker._control.Limits`, made only when
given any) and a :class:`~bounceback.core.breaker._machine.StateMachine` that decides: state, transitions,
the store, health checks, history (see that module). The call path reads a copy of the few things it
needs (state, epoch, open-until, flags, config, refusal tally) that the machine publishes whenever one
changes, so refusing a call or checking the state reads the breaker's own slots and a clock, nothing
more. ``call``, ``acall``, ``with`` blocks and the async decorator are functions of its public port in
``_forms``; the decorator of a plain function is its own, with the refusal while open inlined.

**Counting.** While ``fast_path`` is true the retry engine (and :meth:`CircuitBreaker.call`) run the
function without ``acquire`` and only call ``count_success()`` after a success, without a lock. That bumps
a :class:`~bounceback.core._tally.Tally`, which loses no bump however many threads race; the machine folds
the count into its window under its lock when it next records a failure or reads its metrics. A failure is
recorded under one short lock (the tally folded, the window updated, the trip decided); a breaker given a
store (which may do I/O) calls it outside the lock. No event object is built when nobody listens.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from bounceback.core._events import EventBus, default_bus
from bounceback.core._registry import registry
from bounceback.core._tally import Tally
from bounceback.core._time import SYSTEM_CLOCK, Clock, SystemClock
from bounceback.core.breaker import _forms as forms
from bounceback.core.breaker._config import BreakerConfig, build_config
from bounceback.core.breaker._control import Limits
from bounceback.core.breaker._core import BreakerState
from bounceback.core.breaker._machine import COUNTED, PROBE, StateMachine
from bounceback.core.breaker._metrics import BreakerMetrics
from bounceback.core.breaker._shared_machine import SharedMachine
from bounceback.core.breaker._store import BreakerStore
from bounceback.core.breaker._window import FAILED, OK, SLOW
from bounceback.core.classify._rules import (
    DEFAULT_CLASSIFIER,
    Classification,
    Classifier,
    ClassifierLike,
    ErrorKind,
    as_classifier,
    classify_by_defaults,
)
from bounceback.errors import CircuitOpenError, ConfigError

__all__ = ["BreakerMetrics", "BreakerState", "CircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")

_C = BreakerState.CLOSED
_O = BreakerState.OPEN
_H = BreakerState.HALF_OPEN
_D = BreakerState.DISABLED
_PERMANENT = ErrorKind.PERMANENT
_IGNORED = -1
_RNG = random.Random()
_DEFAULT = build_config({})
_log = logging.getLogger("bounceback.breaker")


class CircuitBreaker:
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

    __slots__ = (
        "__weakref__",
        "_bus",
        "_cfg",
        "_classifier",
        "_epoch",
        "_is_failure",
        "_limits",
        "_machine",
        "_now",
        "_open_until",
        "_open_until_wall",
        "_plain",
        "_refusals",
        "_shared",
        "_state",
        "classify",
        "count_success",
        "fast_path",
        "name",
    )

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
        part: Limits | None = None
        cfg = _DEFAULT  # immutable: every breaker left at the defaults shares it
        if limits or settings is not None:
            part = Limits(self.name, settings, limits)
            cfg = part.build()
        clock = clock or SYSTEM_CLOCK
        # The system clock's methods wrap C functions: hold those, so the hot path calls C directly.
        real = isinstance(clock, SystemClock)
        now: Callable[[], float] = time.monotonic if real else clock.monotonic
        self._now = now
        bus = bus or default_bus
        self._bus = bus  # the call path asks it whether anyone listens before it builds an event
        self._classifier: Classifier = as_classifier(classifier)
        given = self._classifier
        self.classify: Callable[[BaseException], Classification] = (
            classify_by_defaults if given is DEFAULT_CLASSIFIER else given.classify
        )
        """What counts as a failure, decided on every failure of every form (``call``, the decorators, a
        Policy): the classifier's ``classify``, bound once; for the defaults, their one-look-up function."""
        self._is_failure = is_failure
        # The state the call path reads (_state, _epoch, _open_until, _plain, fast_path, _cfg ...) is set by
        # _published, which the machine calls before its constructor returns.
        self._limits = part
        wall = time.time if real else clock.wall
        # One generator for every breaker unless a test injects its own: a Random per breaker would cost
        # 2.5 KB each, and open-time jitter needs no more than independent draws.
        draw = rng if rng is not None else _RNG
        timed = real if timers is None else bool(timers)
        publish = self._published
        # By position: a class called with keywords builds a dict of them, a sixth of a breaker's creation.
        if store is None:
            self._machine = StateMachine(self.name, cfg, now, wall, bus, draw, health_check, timed, publish)
        else:
            self._machine = SharedMachine(
                self.name, cfg, now, wall, bus, draw, health_check, timed, publish, store
            )
        self._shared = self._machine.shared
        self.count_success = self._machine.count_success
        if part is not None and settings is not None and not isinstance(settings, Mapping):
            part.follow(self)
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

    def _published(
        self,
        state: BreakerState,
        epoch: int,
        open_until: float,
        open_until_wall: float,
        plain: bool,
        fast_path: bool,
        cfg: BreakerConfig,
        refusals: Tally,
    ) -> None:
        """The machine's callback (under its lock): the copy the call path reads."""
        self._state = state
        self._epoch = epoch
        self._open_until = open_until
        self._open_until_wall = open_until_wall
        self._plain = plain
        self._cfg = cfg
        self._refusals = refusals
        self.fast_path = fast_path

    # -- the per-call path (the engine's BreakerPort) ----------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now. Reading it moves an open breaker whose open time is over to half-open."""
        st = self._state
        if st is _O and self._now() >= self._open_until:
            self._machine.half_open_due()
            return self._state
        return st

    @property
    def state_name(self) -> str:
        """The current state's value (``"open"``), true now: an open breaker whose open time is over says
        ``"half_open"`` (the same clock check as :attr:`state`, made only while open)."""
        st = self._state
        if st is _O and self._now() >= self._open_until:
            return self.state._value_
        return st._value_  # a plain attribute; Enum.value is a slower descriptor

    def acquire(self) -> Any:
        """Admit one call and return its permit for :meth:`release`, or refuse it.

        Raises ``CircuitOpenError`` while open (``retry_after``: seconds to the next probe), forced open
        (``retry_after`` None) or when the half-open probes are all taken (``retry_after`` 0), and
        ``BulkheadFull`` when ``max_in_flight`` calls are already running.
        """
        st = self._state
        if st is _O:
            now = self._now()
            until = self._open_until
            if now < until and not self._shared:
                next(self._refusals)
                if self._bus.listening:
                    self._machine.emit_rejected("open", self._open_until_wall)
                raise CircuitOpenError(self.name, "open", self._open_until_wall, until - now)
            return self._reopen_or_refuse(now)
        if st is _C:
            if self._plain:
                return None
            return self._machine.admit_closed(self.acquire)
        if st is _H:
            return self._machine.admit_probe(self.acquire)
        if st is _D:
            return None
        if self._shared and self._now() >= self._machine.next_sync:
            self._machine.sync(self._now())
            if self._state is not BreakerState.FORCED_OPEN:
                return self.acquire()
        next(self._refusals)
        if self._bus.listening:
            self._machine.emit_rejected("forced_open", None)
        raise CircuitOpenError(self.name, "forced_open", None, None)

    def _reopen_or_refuse(self, now: float) -> Any:
        """Open, and the open time is over or the breaker shares its store: look again, then decide."""
        machine = self._machine
        if now >= self._open_until:
            machine.half_open_due()
            return self.acquire()
        if now >= machine.next_sync:
            machine.sync(now)
            return self.acquire()
        next(self._refusals)
        if self._bus.listening:
            machine.emit_rejected("open", self._open_until_wall)
        raise CircuitOpenError(self.name, "open", self._open_until_wall, self._open_until - now)

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
                    self._machine.record(outcome, -1)
            return
        flags, epoch, started, token = permit
        if flags & COUNTED:
            self._machine.release_counted()
        cfg = self._cfg
        if outcome >= 0 and cfg.timed and self._now() - started >= cfg.slow_call_duration:
            outcome |= SLOW
        if flags & PROBE:
            self._machine.finish_probe(epoch, token, outcome)
        elif outcome >= 0 and epoch == self._epoch and self._state is _C:
            self._machine.record(outcome, epoch)

    def abandon(self, permit: Any) -> None:
        """Give back the permit of a call that ended without an outcome (cancelled or interrupted)."""
        if permit is not None:
            self._machine.abandon(permit)

    # -- the ways to call through it (functions of the public port, in _forms) ---------------------------

    call = forms.call
    acall = forms.acall

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (sync or ``async def``) so every call goes through the breaker."""
        if inspect.iscoroutinefunction(fn):
            return forms.decorate(self, fn)
        classify = self.classify
        acquire = self.acquire
        release = self.release
        abandon = self.abandon

        # The fast path of call() inlined (a success pays one flag test and a count), and so is the refusal
        # while open: a refused call raises from this frame, not from acquire() below it, which saves the
        # cost of unwinding one more frame (a third of a refusal's cost).
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.fast_path:
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:
                    release(None, classify(exc))
                    raise
                self.count_success()
                return result
            if self._state is _O and not self._shared:
                now = self._now()
                if now < self._open_until:
                    next(self._refusals)
                    if self._bus.listening:
                        self._machine.emit_rejected("open", self._open_until_wall)
                    raise CircuitOpenError(self.name, "open", self._open_until_wall, self._open_until - now)
            permit = acquire()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                release(permit, classify(exc))
                raise
            except BaseException:
                abandon(permit)
                raise
            release(permit, None)
            return result

        wrapper.breaker = self  # type: ignore[attr-defined]
        return wrapper

    def __enter__(self) -> Any:
        forms.enter(self)
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        forms.leave(self, exc)

    async def __aenter__(self) -> Any:
        forms.enter(self)
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        forms.leave(self, exc)

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def success_tally(self) -> Tally | None:
        """The tally that :meth:`count_success` bumps, when it is one: a policy may count a success in it
        together with its budget's call (one call into C for both; see ``Tally.paired``). None when a
        shared store counts the successes itself."""
        return self._machine.success_tally

    @property
    def classifier(self) -> Classifier:
        """The classifier that decides what an error is (``DEFAULT_CLASSIFIER`` unless given)."""
        return self._classifier

    @property
    def config(self) -> BreakerConfig:
        """The limits in force now."""
        return self._cfg

    @property
    def store(self) -> BreakerStore:
        """The store holding the breaker's window and state (its own in-memory store unless given one)."""
        return self._machine.store

    def metrics(self) -> BreakerMetrics:
        """A snapshot: state, counts and rates in the window, rejections, time in state, transitions.

        >>> brk = CircuitBreaker("docs-snapshot")
        >>> brk.call(len, "abc")
        3
        >>> brk.metrics().calls
        1
        """
        return self._machine.metrics(self.state)

    # -- control ---------------------------------------------------------------------------------------

    def configure(self, **limits: Any) -> None:
        """Change limits while running (keyword names as in the constructor); invalid values change nothing.

        >>> brk = CircuitBreaker("docs-configure")
        >>> brk.configure(failure_rate=10, max_in_flight=5)
        >>> brk.config.max_in_flight
        5
        """
        self._machine.install(self._limits_part().configure(limits))

    def apply_settings(self, values: Mapping[str, Any]) -> None:
        """Change limits from settings keys while running; invalid values change nothing.

        Keys outside ``breaker.*`` are ignored, so a whole resolved settings mapping can be passed.
        """
        self._machine.install(self._limits_part().apply_settings(values))

    def reload(self) -> None:
        """Re-read the settings source (done by itself when it reports a change).

        A bad stored value leaves the last good limits in force, with a warning in the log.
        """
        try:
            cfg = self._limits_part().build()
        except ConfigError:
            _log.warning(
                "settings for breaker %r are invalid; keeping the last good values", self.name, exc_info=True
            )
            return
        self._machine.install(cfg)

    def _limits_part(self) -> Limits:
        if self._limits is None:
            self._limits = Limits(self.name)
        return self._limits

    def force_open(self, reason: str = "forced open by hand") -> None:
        """Refuse every call until :meth:`force_close`, :meth:`reset` or :meth:`disable`."""
        self._machine.manual(BreakerState.FORCED_OPEN, reason)

    def force_close(self, reason: str = "closed by hand") -> None:
        """Close now with an empty window. The open-time streak is kept: if the dependency is still
        down, the next open lasts longer."""
        self._machine.manual(_C, reason, clear=True)

    def disable(self, reason: str = "disabled by hand") -> None:
        """Let every call through and count nothing, until :meth:`force_close` or :meth:`reset`."""
        self._machine.manual(_D, reason)

    def reset(self) -> None:
        """Back to new: closed, empty window, no open-time streak, counters (rejected, opens, health) zeroed."""
        self._machine.reset()

    # -- timers ----------------------------------------------------------------------------------------

    def tick(self) -> float | None:
        """Do what is due now: move to half-open when the open time is over (``half_open="timer"``) and
        run the health check when it is due. Returns seconds until something is next due, or None.

        An async health check runs to completion here only when no event loop runs in this thread; inside
        one, use :meth:`atick`.

        >>> from bounceback.testing import FakeClock
        >>> clock = FakeClock()
        >>> brk = CircuitBreaker("docs-tick", half_open="timer", open_seconds=10, clock=clock)
        >>> brk.force_open(); brk.force_close()
        >>> brk.tick() is None
        True
        """
        return self._machine.checker().tick()

    async def atick(self) -> float | None:
        """:meth:`tick` for async code: an async health check is awaited on the running loop."""
        return await self._machine.checker().atick()

    @property
    def timers_running(self) -> bool:
        """True while the breaker's own timer thread or task runs (it ends by itself once nothing is due)."""
        health = self._machine.health
        return health is not None and health.running

    def close(self) -> None:
        """Stop the breaker's own timers (they also stop by themselves once it is no longer open)."""
        health = self._machine.health
        if health is not None:
            health.close()

    def __repr__(self) -> str:
        cfg = self._cfg
        return (
            f"CircuitBreaker({self.name!r}, state={self._state.value!r}, failure_rate={cfg.failure_rate:g}, "
            f"window={cfg.window_type}:{cfg.window:g}, open_seconds={cfg.open_seconds:g})"
        )
